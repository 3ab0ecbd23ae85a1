//! How the indexes of a process run: the kernels' instruction set and the flat index's SQ8 codes. The binary
//! chooses them (flags, config file, environment) and passes them in; the core reads no environment, so tests
//! and benchmarks vary every option in one process.

use crate::kernels::Simd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    /// The kernels' instruction set: at most what this CPU has, by construction of [`Simd`].
    pub simd: Simd,
    /// Whether flat indexes above [`crate::flat::CODED_MIN_FLOATS`] keep SQ8 codes and scan them first.
    pub flat_codes: bool,
    /// Whether the code scan uses AVX-512 VNNI where the level and the CPU have it.
    pub vnni: bool,
}

impl Default for IndexOptions {
    /// The best this CPU can do: its best instruction set, codes and VNNI on.
    fn default() -> Self {
        Self { simd: Simd::best(), flat_codes: true, vnni: true }
    }
}

impl IndexOptions {
    /// Whether the code scan runs the VNNI kernel with these options on this CPU.
    pub fn uses_vnni(&self) -> bool {
        self.vnni && self.simd.has_vnni()
    }
}
