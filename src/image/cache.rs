//! A bounded process-wide cache of unpacked kernels, so that PV and PVH builds of one kernel
//! file in one process (xenopsd building a boot storm of guests in-process) decompress it once.
//!
//! Entries are found by the file's (device, inode, size, mtime) and the size limit in force,
//! and then validated by content: the file is read on every build and its bytes compared with
//! the cached copy, so a file rewritten in place with the same mtime is never served stale, and
//! what is returned is always the unpacking of the bytes just read. The outcome of unpacking
//! (image or error) is a pure function of those bytes and the limit, so errors are cached too;
//! concurrent builds of a file not yet cached wait for one decompression instead of each
//! running their own. The cache holds at most [`DEFAULT_MAX_ENTRIES`] entries and
//! [`DEFAULT_MAX_BYTES`] bytes (compressed and unpacked copies together), least recently used
//! first out. An uncompressed file is returned as read, without caching.

use super::decompress::{self, Format};
use crate::error::{Error, Step};
use once_cell::sync::Lazy;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Entries held by the process-wide cache.
pub const DEFAULT_MAX_ENTRIES: usize = 4;

/// Bytes held by the process-wide cache (Debian 12's kernel: 8 MiB compressed, 63 MiB unpacked).
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// A kernel as libxenguest's loaders leave it: the ELF bytes and the compression they came in.
#[derive(Debug, Clone)]
pub struct KernelImage {
    /// The unpacked kernel (an ELF file, unless the image is malformed).
    pub data: Arc<[u8]>,
    /// How the file was compressed (`None`: used as read).
    pub compression: Option<Format>,
}

/// Where unpacking failed: the step it is reported as, errno and reason.
#[derive(Debug, Clone)]
struct Failure {
    /// `true`: `xc_dom_parse_image` (the bzImage payload); `false`: the caller's step.
    parse: bool,
    code: i32,
    reason: String,
}

type Outcome = Result<KernelImage, Failure>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    size_bytes: u64,
    mtime_s: i64,
    mtime_ns: i64,
    limit_bytes: u64,
}

struct Entry {
    key: Key,
    raw: Arc<[u8]>,
    outcome: Arc<OnceLock<Outcome>>,
    /// Compressed plus unpacked bytes, once unpacked.
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    clock: u64,
    /// Unpackings run (misses), for tests and measurements.
    unpacks: u64,
}

/// A bounded LRU cache of unpacked kernels.
pub struct KernelCache {
    state: Mutex<State>,
    max_entries: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KernelCache(max {} entries, {} bytes)",
            self.max_entries, self.max_bytes
        )
    }
}

/// The process-wide cache used by [`super::load_kernel_cached`].
pub static KERNELS: Lazy<KernelCache> =
    Lazy::new(|| KernelCache::new(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES));

impl KernelCache {
    /// An empty cache of at most `max_entries` entries and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        KernelCache {
            state: Mutex::default(),
            max_entries,
            max_bytes,
        }
    }

    /// Read `path` (at most `limit` bytes), gunzip it and unwrap a bzImage's payload (to at
    /// most `limit` bytes), as `read_file`, `inflate_kernel_file` and `unwrap_bzimage` do,
    /// reusing an earlier unpacking of the same bytes under the same limit. Read and gzip
    /// failures are reported as `step`, bzImage failures as `xc_dom_parse_image`.
    pub fn load(&self, step: Step, path: &Path, limit: u64) -> Result<KernelImage, Error> {
        let raw = super::read_file(step, path, limit)?;
        let fail = |f: Failure| {
            let step = if f.parse { Step::ParseImage } else { step };
            step.image(f.code, path.display().to_string(), f.reason)
        };
        if !decompress::is_gzip(&raw) && !super::bzimage::is_bzimage(&raw) {
            return Ok(KernelImage {
                data: raw.into(),
                compression: None,
            });
        }
        // Metadata after the read: if the file changed in between, the key is wrong but the
        // content check still only matches these bytes.
        let Ok(meta) = std::fs::metadata(path) else {
            return unpack(raw, limit).map_err(fail);
        };
        let key = Key {
            dev: meta.dev(),
            ino: meta.ino(),
            size_bytes: raw.len() as u64,
            mtime_s: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
            limit_bytes: limit,
        };
        let mut raw = raw;
        loop {
            let (shared, cell) = self.slot(key, raw);
            let outcome = cell.get_or_init(|| {
                self.lock().unpacks += 1;
                unpack(shared.to_vec(), limit)
            });
            if matches!(outcome, Err(f) if f.code == libc::ECANCELED) {
                // A cancelled unpacking says nothing about the file: forget it, and builds
                // that waited on it (not cancelled themselves) unpack it again.
                self.forget(&cell);
                if !crate::cancel::requested() {
                    raw = shared.to_vec();
                    continue;
                }
            }
            self.account(&cell);
            return outcome.clone().map_err(fail);
        }
    }

    /// Drop the entry whose outcome is `cell`, if it is still held.
    fn forget(&self, cell: &Arc<OnceLock<Outcome>>) {
        self.lock()
            .entries
            .retain(|e| !Arc::ptr_eq(&e.outcome, cell));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key` holding exactly `raw`, made (replacing a stale one) if need be.
    fn slot(&self, key: Key, raw: Vec<u8>) -> (Arc<[u8]>, Arc<OnceLock<Outcome>>) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(i) = state.entries.iter().position(|e| e.key == key) {
            let entry = &mut state.entries[i];
            if *entry.raw == raw[..] {
                entry.last_used = now;
                return (entry.raw.clone(), entry.outcome.clone());
            }
            // Same name, size and mtime, other bytes: rewritten in place.
            state.entries.swap_remove(i);
        }
        let raw: Arc<[u8]> = raw.into();
        let outcome = Arc::new(OnceLock::new());
        state.entries.push(Entry {
            key,
            raw: raw.clone(),
            outcome: outcome.clone(),
            bytes: raw.len(),
            last_used: now,
        });
        self.evict(&mut state);
        (raw, outcome)
    }

    /// Count an entry's unpacked bytes once known, then evict down to the limits.
    fn account(&self, cell: &Arc<OnceLock<Outcome>>) {
        let mut state = self.lock();
        if let Some(entry) = state
            .entries
            .iter_mut()
            .find(|e| Arc::ptr_eq(&e.outcome, cell))
        {
            let unpacked = match cell.get() {
                Some(Ok(image)) if image.compression.is_some() => image.data.len(),
                _ => 0,
            };
            entry.bytes = entry.raw.len() + unpacked;
        }
        self.evict(&mut state);
    }

    fn evict(&self, state: &mut State) {
        loop {
            let total: usize = state.entries.iter().map(|e| e.bytes).sum();
            if state.entries.len() <= self.max_entries && total <= self.max_bytes {
                return;
            }
            let Some(oldest) = (0..state.entries.len()).min_by_key(|&i| state.entries[i].last_used)
            else {
                return;
            };
            state.entries.swap_remove(oldest);
        }
    }

    /// Unpackings run so far (each miss runs one).
    pub fn unpacks(&self) -> u64 {
        self.lock().unpacks
    }

    /// Entries held and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.lock();
        (
            state.entries.len(),
            state.entries.iter().map(|e| e.bytes).sum(),
        )
    }
}

fn unpack(raw: Vec<u8>, limit: u64) -> Outcome {
    let (data, compression) =
        super::inflate_kernel_file(raw, limit).map_err(|(code, reason)| Failure {
            parse: false,
            code,
            reason,
        })?;
    let (data, compression) =
        super::unwrap_bzimage(data, compression, limit).map_err(|(code, reason)| Failure {
            parse: true,
            code,
            reason,
        })?;
    Ok(KernelImage {
        data: data.into(),
        compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A gzipped "kernel" of `len` bytes of `fill`.
    fn kernel(dir: &Path, name: &str, fill: u8, len: usize) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, gzip(&vec![fill; len])).unwrap();
        path
    }

    const STEP: Step = Step::KernelFile;
    const LIMIT: u64 = 1 << 20;

    #[test]
    fn a_cancelled_unpacking_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = kernel(dir.path(), "k", 7, 4096);
        let cache = KernelCache::new(4, 1 << 20);
        let cancel = crate::cancel::Cancel::new();
        cancel.cancel();
        let e = cancel.scope(|| cache.load(STEP, &path, LIMIT)).unwrap_err();
        assert_eq!(e.code(), libc::ECANCELED, "{e}");
        assert_eq!(cache.usage().0, 0, "nothing kept");
        // The next build of the same kernel unpacks it for itself.
        let image = cache.load(STEP, &path, LIMIT).unwrap();
        assert_eq!(&*image.data, &[7u8; 4096][..]);
        assert_eq!(cache.unpacks(), 2);
    }

    #[test]
    fn a_second_load_is_a_hit_sharing_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = kernel(dir.path(), "k", 7, 4096);
        let cache = KernelCache::new(4, 1 << 20);
        let a = cache.load(STEP, &path, LIMIT).unwrap();
        let b = cache.load(STEP, &path, LIMIT).unwrap();
        assert_eq!(a.compression, Some(Format::Gzip));
        assert_eq!(&*a.data, &[7u8; 4096][..]);
        assert!(Arc::ptr_eq(&a.data, &b.data), "hit shares the bytes");
        assert_eq!(cache.unpacks(), 1);
    }

    #[test]
    fn a_file_rewritten_in_place_with_the_same_mtime_is_unpacked_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = kernel(dir.path(), "k", 1, 4096);
        let cache = KernelCache::new(4, 1 << 20);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(cache.load(STEP, &path, LIMIT).unwrap().data[0], 1);
        // Same size (same compressed length for the same fill length), same inode, same mtime.
        let other = gzip(&[2u8; 4096]);
        assert_eq!(other.len() as u64, std::fs::metadata(&path).unwrap().len());
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&other).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let again = cache.load(STEP, &path, LIMIT).unwrap();
        assert_eq!(again.data[0], 2, "not served stale");
        assert_eq!(cache.unpacks(), 2);
        assert_eq!(cache.usage().0, 1, "the stale entry was replaced");
    }

    #[test]
    fn eviction_by_count_and_by_bytes_is_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..3u8)
            .map(|i| kernel(dir.path(), &format!("k{i}"), i, 4096))
            .collect();
        let by_count = KernelCache::new(2, 1 << 20);
        by_count.load(STEP, &paths[0], LIMIT).unwrap();
        by_count.load(STEP, &paths[1], LIMIT).unwrap();
        by_count.load(STEP, &paths[0], LIMIT).unwrap(); // k1 is now the oldest
        by_count.load(STEP, &paths[2], LIMIT).unwrap();
        assert_eq!(by_count.unpacks(), 3);
        by_count.load(STEP, &paths[0], LIMIT).unwrap();
        assert_eq!(by_count.unpacks(), 3, "k0 kept");
        by_count.load(STEP, &paths[1], LIMIT).unwrap();
        assert_eq!(by_count.unpacks(), 4, "k1 evicted");

        // Each entry is ~4 KiB unpacked plus its compressed copy: room for two.
        let by_bytes = KernelCache::new(10, 2 * 4096 + 400);
        for p in &paths {
            by_bytes.load(STEP, p, LIMIT).unwrap();
        }
        let (entries, bytes) = by_bytes.usage();
        assert_eq!(entries, 2);
        assert!(bytes <= 2 * 4096 + 400, "{bytes}");
        by_bytes.load(STEP, &paths[2], LIMIT).unwrap();
        assert_eq!(by_bytes.unpacks(), 3, "the newest is kept");
        by_bytes.load(STEP, &paths[0], LIMIT).unwrap();
        assert_eq!(by_bytes.unpacks(), 4, "the oldest went");
    }

    #[test]
    fn the_limit_is_part_of_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = kernel(dir.path(), "k", 0, 64 << 10);
        let cache = KernelCache::new(4, 1 << 20);
        assert_eq!(cache.load(STEP, &path, LIMIT).unwrap().data.len(), 64 << 10);
        let e = cache.load(STEP, &path, 16 << 10).unwrap_err();
        assert_eq!(e.code(), libc::EFBIG, "{e}");
        assert!(e.to_string().contains(STEP.wire_name()), "{e}");
        assert!(
            cache.load(STEP, &path, LIMIT).is_ok(),
            "the larger limit still hits"
        );
        assert_eq!(cache.unpacks(), 2);
    }

    #[test]
    fn an_uncompressed_file_is_returned_as_read_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elf");
        std::fs::write(&path, b"\x7fELF not really").unwrap();
        let cache = KernelCache::new(4, 1 << 20);
        let k = cache.load(STEP, &path, LIMIT).unwrap();
        assert_eq!(
            (&*k.data, k.compression),
            (&b"\x7fELF not really"[..], None)
        );
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn concurrent_builds_of_one_kernel_unpack_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = kernel(dir.path(), "k", 9, 256 << 10);
        let cache = KernelCache::new(4, 4 << 20);
        let images: Vec<KernelImage> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.load(STEP, &path, LIMIT).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(cache.unpacks(), 1);
        assert!(images.iter().all(|k| Arc::ptr_eq(&k.data, &images[0].data)));
    }
}
