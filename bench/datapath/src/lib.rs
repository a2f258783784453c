//! Benchmarks of weft's datapath live in benches/: `classifier` (flow tables) and `packet` (the per-packet
//! pieces: tunnel headers, segmentation, coalescing, checksums, MAC table).
