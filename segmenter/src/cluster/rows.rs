//! The `f32` copy of a fit's rows, in memory the kernel backs with huge pages.
//!
//! At 1M × 100 the copy is 400 MB, written once and then read by every pass. In
//! 4 KiB pages its first touch takes ~100,000 page faults — a third of a warm fit
//! (measured: warm 1M × 100 after a 5% drift 0.35 s with 4 KiB pages, 0.26 s with
//! transparent huge pages on for the whole machine; `bench/kmeans/RESULTS.md`,
//! 2026-12-03). Linux hands out transparent huge pages in `madvise` mode only to
//! memory that asks for them, which the standard allocator does not; an anonymous
//! mapping (memmap2, a safe API) can ask. Small copies, other systems, or a refused
//! mapping keep an ordinary `Vec`.

use memmap2::{MmapMut, MmapOptions};

/// Copies of at least this many bytes are mapped with the huge-page advice (a
/// huge page is 2 MiB; smaller copies gain nothing).
const MAPPED_BYTES: usize = 8 << 20;

/// A zeroed `f32` buffer of fixed length.
pub(crate) enum RowBuffer {
    /// Ordinary heap memory.
    Heap(Vec<f32>),
    /// An anonymous mapping of exactly the values' bytes (page-aligned, zeroed by
    /// the kernel), with huge pages asked for on Linux.
    Mapped(MmapMut),
}

impl RowBuffer {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        // A length whose bytes overflow goes to the `Vec`, which reports it.
        let bytes = len.checked_mul(std::mem::size_of::<f32>()).unwrap_or(0);
        if bytes >= MAPPED_BYTES {
            if let Ok(map) = MmapOptions::new().len(bytes).map_anon() {
                // Only advice: without huge pages the mapping works as before.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                return Self::Mapped(map);
            }
        }
        Self::Heap(vec![0.0; len])
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        match self {
            Self::Heap(v) => v,
            Self::Mapped(map) => bytemuck::cast_slice(map),
        }
    }

    /// The values, to write.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        match self {
            Self::Heap(v) => v,
            Self::Mapped(map) => bytemuck::cast_slice_mut(map),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_are_zeroed_and_writable() {
        for len in [0, 3, MAPPED_BYTES / 4 + 5] {
            let mut b = RowBuffer::zeroed(len);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&v| v == 0.0));
            for (i, v) in b.as_mut_slice().iter_mut().enumerate() {
                *v = i as f32;
            }
            assert!(b.as_slice().iter().enumerate().all(|(i, &v)| v == i as f32));
            assert_eq!(
                matches!(b, RowBuffer::Mapped(_)),
                len * 4 >= MAPPED_BYTES,
                "{len} values"
            );
        }
    }
}
