//! IPsec for weft's tunnels: an IKEv2 engine with pre-shared keys (`ike`), ESP with AES-GCM in the
//! datapath's buffers (`esp`), and the message codec and algorithms they share.

pub mod crypto;
pub mod esp;
pub mod fuzz;
pub mod ike;
mod modp;
pub mod msg;

/// Unit tests measure what the decoders allocate (see `msg` and `esp`).
#[cfg(test)]
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;
