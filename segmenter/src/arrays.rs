//! Arrays that are filled by scattered additions.

use ndarray::Array2;

/// An array of zeros (`T::default()`) whose memory has been written before it is
/// returned. `Array2::zeros` asks the allocator for zeroed memory, which it gets
/// from the kernel untouched; the first `+=` on each page then faults in the
/// kernel's shared zero page to read it, and the write after it faults again: the
/// page gets a zeroed page of its own, and the old mapping is flushed from the TLB
/// of the other cores running the process's threads, an interrupt per 4 KiB page.
/// Written first, each page faults once.
pub fn written_zeros<T: Copy + Default>(shape: (usize, usize)) -> Array2<T> {
    let len = shape.0.checked_mul(shape.1).expect("array size overflows");
    let mut v = Vec::with_capacity(len);
    // The optimiser may fold an allocation followed by a fill with zeros into a
    // zeroed allocation, which is what this avoids: the pointer escapes first.
    std::hint::black_box(v.as_mut_ptr());
    v.resize(len, T::default());
    Array2::from_shape_vec(shape, v).expect("the shape's length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_zeros_are_zeros_of_the_shape_in_row_major_order() {
        let mut a = written_zeros::<f32>((3, 5));
        assert_eq!(a.dim(), (3, 5));
        assert!(a.is_standard_layout());
        assert!(a.iter().all(|&v| v == 0.0));
        a[[2, 4]] += 1.5;
        assert_eq!(a.as_slice().unwrap()[14], 1.5);
        assert_eq!(written_zeros::<f64>((0, 7)).dim(), (0, 7));
    }
}
