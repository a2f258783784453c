//! Benchmarks of weft's flow classifier live in benches/.
