//! spectra-segmenter: re-clusters outlets per segmentation (in progress).
