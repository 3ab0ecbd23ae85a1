//! Disk-full protection: a node refuses data writes while its data directory's file system has less free space
//! than a reserve, instead of letting RocksDB run out of space mid-write or mid-compaction.
//!
//! Why a reserve rather than handling ENOSPC alone: RocksDB needs room to flush memtables and compact (an L0
//! compaction may rewrite tens of MB before it frees anything); when its own writes fail for lack of space it
//! stops every background job and the node would need RocksDB's recovery to run before anything works again. With
//! the reserve, the write that would have eaten the last space is refused up front with a clear
//! RESOURCE_EXHAUSTED, reads keep being served, nothing acknowledged is at risk, and writes are taken again as soon
//! as space is freed: the check reads the file system's free space on every write batch (`statvfs`, about a
//! microsecond), so no restart and no polling interval. A write that reaches RocksDB anyway and fails with "no
//! space" is reported the same way (see [`crate::NodeError::from_write`]).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::NodeError;

/// Free space kept for RocksDB by default: a flush of the largest memtable (32 MiB) plus compaction headroom.
pub const DEFAULT_RESERVE_BYTES: u64 = 256 << 20;

#[derive(Debug)]
pub struct DiskGuard {
    path: PathBuf,
    c_path: CString,
    reserve: u64,
}

impl DiskGuard {
    /// Guards the file system holding `path` (which must exist), keeping `reserve` bytes free.
    pub fn new(path: &Path, reserve: u64) -> Result<DiskGuard, NodeError> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| NodeError::BadRequest(format!("data directory {} contains a NUL byte", path.display())))?;
        let guard = DiskGuard { path: path.to_path_buf(), c_path, reserve };
        guard.free_bytes()?;
        Ok(guard)
    }

    /// The guarded directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes available to this process on the data directory's file system.
    pub fn free_bytes(&self) -> Result<u64, NodeError> {
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c_path` is a NUL-terminated path and `stat` is a valid out pointer for statvfs.
        let rc = unsafe { libc::statvfs(self.c_path.as_ptr(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(NodeError::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: statvfs returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        // the field types differ between platforms (u32 on some 32-bit ones)
        #[allow(clippy::unnecessary_cast)]
        Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }

    /// Ok when a data write may go ahead; [`NodeError::DiskFull`] when free space is below the reserve.
    pub fn check(&self) -> Result<(), NodeError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < self.reserve {
            return Err(NodeError::DiskFull { path: self.path.display().to_string(), free, reserve: self.reserve });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_above_the_free_space_refuses_and_zero_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let free = DiskGuard::new(dir.path(), 0).unwrap().free_bytes().unwrap();
        assert!(free > 0);
        assert!(DiskGuard::new(dir.path(), 0).unwrap().check().is_ok());
        assert!(DiskGuard::new(dir.path(), 1).unwrap().check().is_ok());
        let err = DiskGuard::new(dir.path(), u64::MAX).unwrap().check().unwrap_err();
        assert!(matches!(err, NodeError::DiskFull { .. }), "{err}");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::ResourceExhausted);
        assert!(DiskGuard::new(&dir.path().join("missing"), 1).is_err());
    }
}
