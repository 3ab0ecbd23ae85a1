//! A minimal reader for NumPy `.npy` files (C order, little-endian `f4` / `i4`), enough to load the benchmark data
//! sets that `../shared/bench/make_glove.py` writes.

use anyhow::{Context, bail};
use std::path::Path;

/// A 2-d array: `rows × cols` values, row-major.
#[derive(Debug)]
pub struct Matrix<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

fn read_raw(path: &Path, want_descr: &str) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{} is not a .npy file", path.display());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => bail!("unsupported .npy version {v}"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).context("short header")?)?;
    if !header.contains(want_descr) {
        bail!("{}: expected dtype {want_descr}, header is {header}", path.display());
    }
    if header.contains("'fortran_order': True") {
        bail!("{}: Fortran order is not supported", path.display());
    }
    let shape = header.split("'shape':").nth(1).and_then(|s| s.split(')').next()).context("no shape")?;
    let dims: Vec<usize> =
        shape.trim_start_matches([' ', '(']).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let (rows, cols) = match dims.as_slice() {
        [r] => (*r, 1),
        [r, c] => (*r, *c),
        _ => bail!("{}: expected a 1-d or 2-d array, shape is {shape}", path.display()),
    };
    let body = bytes[start + header_len..].to_vec();
    if body.len() != rows * cols * 4 {
        bail!("{}: {} data bytes for shape {rows}×{cols}", path.display(), body.len());
    }
    Ok((rows, cols, body))
}

pub fn read_f32(path: &Path) -> anyhow::Result<Matrix<f32>> {
    let (rows, cols, body) = read_raw(path, "<f4")?;
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Matrix { rows, cols, data })
}

pub fn read_i32(path: &Path) -> anyhow::Result<Matrix<i32>> {
    let (rows, cols, body) = read_raw(path, "<i4")?;
    let data = body.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Matrix { rows, cols, data })
}
