//! Batched datagram I/O: `recvmmsg` into a fixed set of buffers, `sendmmsg` from borrowed slices.
//!
//! All memory is allocated once, when a batch is created; receiving and sending allocate nothing.

use crate::socklen_of;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// A fixed set of receive buffers, each `stride` bytes with `headroom` bytes kept free in front of the
/// packet so that headers can be prepended in place.
pub struct RecvBatch {
    stride: usize,
    headroom: usize,
    storage: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    /// Ancillary data per slot (PACKET_AUXDATA on AF_PACKET sockets).
    ctrl: Vec<[u64; 8]>,
    /// The 802.1Q tag the kernel took off each packet (AF_PACKET with PACKET_AUXDATA): (TPID, TCI).
    tags: Vec<Option<(u16, u16)>>,
    /// For UDP sockets with UDP_GRO: the size of the datagrams coalesced into each buffer (0: one datagram).
    gso: Vec<u16>,
    filled: usize,
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid (AF_UNSPEC).
    unsafe { MaybeUninit::zeroed().assume_init() }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data; null pointers and zero lengths are a valid, empty value.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

impl RecvBatch {
    /// # Panics
    /// If `headroom >= stride` or `count` is zero.
    pub fn new(count: usize, stride: usize, headroom: usize) -> Self {
        assert!(count > 0 && headroom < stride, "bad batch geometry");
        RecvBatch {
            stride,
            headroom,
            storage: vec![0u8; count * stride],
            lens: vec![0; count],
            addrs: vec![zeroed_storage(); count],
            hdrs: vec![zeroed_mmsghdr(); count],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; count],
            ctrl: vec![[0u64; 8]; count],
            tags: vec![None; count],
            gso: vec![0; count],
            filled: 0,
        }
    }

    /// The VLAN tag (TPID, TCI) the kernel removed from packet `i` before handing it over, if any. Linux moves
    /// the 802.1Q header of every received frame into metadata; AF_PACKET sockets with PACKET_AUXDATA report
    /// it, and it must be put back for the frame to cross the bridge as it arrived.
    pub fn stripped_tag(&self, i: usize) -> Option<(u16, u16)> {
        self.tags.get(i).copied().flatten()
    }

    /// When buffer `i` holds several datagrams coalesced by UDP_GRO: their size (all but the last are this
    /// long). 0 when it holds one.
    pub fn segment_size(&self, i: usize) -> u16 {
        self.gso.get(i).copied().unwrap_or(0)
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub fn headroom(&self) -> usize {
        self.headroom
    }

    /// Packet `i` as received.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn packet(&self, i: usize) -> &[u8] {
        assert!(i < self.filled);
        let start = i * self.stride + self.headroom;
        &self.storage[start..start + self.lens[i]]
    }

    /// The whole slot of packet `i` (headroom, packet, tailroom) and the packet's range within it.
    ///
    /// # Panics
    /// If `i >= self.capacity()`.
    pub fn slot_mut(&mut self, i: usize) -> (&mut [u8], std::ops::Range<usize>) {
        let start = i * self.stride;
        let range = self.headroom..self.headroom + self.lens[i];
        (&mut self.storage[start..start + self.stride], range)
    }

    /// The whole slot `i` (headroom, packet, tailroom); packet ranges from [`slot_mut`](Self::slot_mut) index it.
    ///
    /// # Panics
    /// If `i >= self.capacity()`.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.storage[i * self.stride..(i + 1) * self.stride]
    }

    /// All slots as one buffer (slot `i` begins at [`slot_base`](Self::slot_base)`(i)`).
    pub fn storage(&self) -> &[u8] {
        &self.storage
    }

    /// All slots as one buffer (slot `i` begins at [`slot_base`](Self::slot_base)`(i)`), for work that moves
    /// bytes from one slot into an earlier one.
    pub fn storage_mut(&mut self) -> &mut [u8] {
        &mut self.storage
    }

    /// Where slot `i` begins in [`storage_mut`](Self::storage_mut).
    pub fn slot_base(&self, i: usize) -> usize {
        i * self.stride
    }

    /// Where packet `i` came from, for sockets that report it.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        from_storage(&self.addrs[i])
    }

    /// Receives up to `capacity()` datagrams from `fd` without blocking. Returns how many arrived (0 when none).
    pub fn recv_mmsg(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        let room = self.stride - self.headroom;
        let base = self.storage.as_mut_ptr();
        for i in 0..self.capacity() {
            // SAFETY: `i * stride + headroom` is inside `storage`, which is `capacity * stride` bytes long.
            self.iovs[i].iov_base = unsafe { base.add(i * self.stride + self.headroom) }.cast();
            self.iovs[i].iov_len = room;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = socklen_of::<libc::sockaddr_storage>();
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
            h.msg_flags = 0;
        }
        let cap = self.capacity() as libc::c_uint;
        // SAFETY: every header points at live buffers, names and iovecs owned by `self`, sized as declared.
        let r =
            unsafe { syscall!(recvmmsg(fd, self.hdrs.as_mut_ptr(), cap, libc::MSG_DONTWAIT, std::ptr::null_mut())) };
        match r {
            Ok(n) => {
                let n = n as usize;
                for i in 0..n {
                    self.lens[i] = self.hdrs[i].msg_len as usize;
                    if self.hdrs[i].msg_hdr.msg_namelen == 0 {
                        self.addrs[i].ss_family = libc::AF_UNSPEC as libc::sa_family_t;
                    }
                    let used = self.hdrs[i].msg_hdr.msg_controllen.min(std::mem::size_of::<[u64; 8]>());
                    let meta = parse_control(&self.ctrl[i], used);
                    self.tags[i] = meta.tag;
                    self.gso[i] = meta.gso_size;
                }
                self.filled = n;
                Ok(n)
            }
            Err(e) if crate::would_block(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Fills the batch by calling `read` on each slot's room until it reports `WouldBlock` or the batch is
    /// full (for TAP devices, which have no `recvmmsg`).
    pub fn fill_with(&mut self, mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
        self.filled = 0;
        for i in 0..self.capacity() {
            let start = i * self.stride + self.headroom;
            let end = (i + 1) * self.stride;
            match read(&mut self.storage[start..end]) {
                Ok(n) => {
                    self.lens[i] = n;
                    self.tags[i] = None;
                    self.gso[i] = 0;
                    self.addrs[i].ss_family = libc::AF_UNSPEC as libc::sa_family_t;
                    self.filled = i + 1;
                }
                Err(e) if crate::would_block(&e) => break,
                // Frames already read are handed over; a lasting error shows up again on the next read.
                Err(_) if self.filled > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(self.filled)
    }
}

const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// What the control messages of a received packet say.
#[derive(Default)]
struct RecvMeta {
    tag: Option<(u16, u16)>,
    gso_size: u16,
}

/// Reads the control messages among the first `used` bytes of `ctrl`: PACKET_AUXDATA (the VLAN tag the kernel
/// removed) and UDP_GRO (the size of coalesced datagrams).
fn parse_control(ctrl: &[u64; 8], used: usize) -> RecvMeta {
    let mut meta = RecvMeta::default();
    let bytes = ctrl.as_ptr().cast::<u8>();
    let hdr_len = std::mem::size_of::<libc::cmsghdr>();
    let mut at = 0;
    while at + hdr_len <= used {
        // SAFETY: `at + hdr_len <= used <= size_of_val(ctrl)`; the read is unaligned-safe.
        let h = unsafe { std::ptr::read_unaligned(bytes.add(at).cast::<libc::cmsghdr>()) };
        let len = h.cmsg_len as usize;
        if len < hdr_len || at + len > used {
            break;
        }
        // SAFETY: CMSG_LEN only computes a size.
        let data_at = at + unsafe { libc::CMSG_LEN(0) } as usize;
        if h.cmsg_level == libc::SOL_PACKET
            && h.cmsg_type == crate::packet::PACKET_AUXDATA
            && data_at + std::mem::size_of::<libc::tpacket_auxdata>() <= used
        {
            // SAFETY: the auxdata lies inside the `used` bytes (checked above); the read is unaligned-safe.
            let aux = unsafe { std::ptr::read_unaligned(bytes.add(data_at).cast::<libc::tpacket_auxdata>()) };
            if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { aux.tp_vlan_tpid } else { 0x8100 };
                meta.tag = Some((tpid, aux.tp_vlan_tci));
            }
        } else if h.cmsg_level == crate::udp::SOL_UDP_LEVEL
            && h.cmsg_type == crate::udp::UDP_GRO
            && data_at + std::mem::size_of::<i32>() <= used
        {
            // SAFETY: the integer lies inside the `used` bytes (checked above); the read is unaligned-safe.
            let size = unsafe { std::ptr::read_unaligned(bytes.add(data_at).cast::<i32>()) };
            meta.gso_size = u16::try_from(size).unwrap_or(0);
        }
        at += (len + 7) & !7;
    }
    meta
}

/// Converts a kernel socket address into a std one (IPv4-mapped IPv6 addresses become IPv4).
pub fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which fits in sockaddr_storage.
            let sin = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6, which fits in sockaddr_storage.
            let sin6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            match ip.to_ipv4_mapped() {
                Some(v4) => Some(SocketAddr::V4(SocketAddrV4::new(v4, port))),
                None => Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id))),
            }
        }
        _ => None,
    }
}

/// Writes `addr` into `ss`, returning the length the kernel should read.
pub fn to_storage(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    *ss = zeroed_storage();
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned for it.
            let sin = unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            socklen_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned for it.
            let sin6 = unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            socklen_of::<libc::sockaddr_in6>()
        }
    }
}

/// The most slices one outgoing message may be gathered from: a header and a merged frame's 64 parts (its
/// first segment and each later payload where it arrived).
pub const MAX_PARTS: usize = 66;

/// Per-packet IP header fields for an outgoing datagram, passed as ancillary data (`IP_TOS`/`IP_TTL`, or
/// `IPV6_TCLASS`/`IPV6_HOPLIMIT`); `None` keeps the socket's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpMeta {
    pub tos: Option<u8>,
    pub ttl: Option<u8>,
}

impl IpMeta {
    pub fn is_empty(&self) -> bool {
        self.tos.is_none() && self.ttl.is_none()
    }
}

/// Room for three control messages (TOS, TTL, segment size), 8-byte aligned.
type CtrlBuf = [u64; 10];

/// Reusable memory for `sendmmsg`; [`MmsgStorage::start`] borrows it for one batch.
pub struct MmsgStorage {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<CtrlBuf>,
}

/// Appends one control message carrying an `int` to `buf` at byte `at`; returns the new end.
fn put_cmsg_int(buf: &mut CtrlBuf, at: usize, level: i32, kind: i32, value: i32) -> usize {
    put_cmsg(buf, at, level, kind, &value.to_ne_bytes())
}

/// Appends one control message carrying `data` (at most 4 bytes) to `buf` at byte `at`; returns the new end.
fn put_cmsg(buf: &mut CtrlBuf, at: usize, level: i32, kind: i32, data: &[u8]) -> usize {
    assert!(data.len() <= 4, "control message data too long");
    let int = data.len() as u32;
    // SAFETY: CMSG_LEN and CMSG_SPACE only compute sizes.
    let (len, space, data_at) = unsafe { (libc::CMSG_LEN(int), libc::CMSG_SPACE(int) as usize, libc::CMSG_LEN(0)) };
    let hdr = libc::cmsghdr { cmsg_len: len as _, cmsg_level: level, cmsg_type: kind };
    assert!(at + space <= std::mem::size_of::<CtrlBuf>(), "control buffer overflow");
    let base = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `at + space` bytes fit in `buf` (checked above); `at` is a multiple of the 8-byte cmsg
    // alignment, and the data offset is what CMSG_DATA gives (CMSG_LEN(0) past the header's start).
    unsafe {
        std::ptr::write_unaligned(base.add(at).cast::<libc::cmsghdr>(), hdr);
        std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(at + data_at as usize), data.len());
    }
    at + space
}

impl MmsgStorage {
    pub fn new(capacity: usize) -> Self {
        MmsgStorage {
            hdrs: vec![zeroed_mmsghdr(); capacity],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; capacity * MAX_PARTS],
            addrs: vec![zeroed_storage(); capacity],
            ctrl: vec![[0u64; 10]; capacity],
        }
    }

    /// Starts an empty batch whose messages borrow data for `'d`.
    pub fn start<'d>(&mut self) -> SendBatch<'_, 'd> {
        SendBatch { st: self, len: 0, _data: PhantomData }
    }
}

/// Messages queued for one `sendmmsg`. The data they point at is borrowed for `'d`.
pub struct SendBatch<'s, 'd> {
    st: &'s mut MmsgStorage,
    len: usize,
    _data: PhantomData<&'d [u8]>,
}

/// How a batch send went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: usize,
    pub failed: usize,
}

impl<'d> SendBatch<'_, 'd> {
    pub fn is_full(&self) -> bool {
        self.len == self.st.hdrs.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one message gathered from `parts` (at most [`MAX_PARTS`]), to `dest` or, when `None`, to
    /// the socket's bound or connected peer.
    ///
    /// # Panics
    /// If the batch is full or `parts` has more than [`MAX_PARTS`] slices.
    pub fn push(&mut self, parts: &[&'d [u8]], dest: Option<&SocketAddr>) {
        self.push_with(parts, dest, IpMeta::default());
    }

    /// Like [`push`](Self::push), setting the outer TOS / traffic class and TTL / hop limit of this datagram
    /// (IP and UDP sockets; the family is `dest`'s).
    pub fn push_with(&mut self, parts: &[&'d [u8]], dest: Option<&SocketAddr>, meta: IpMeta) {
        self.push_segmented(parts, dest, meta, 0);
    }

    /// Like [`push_with`](Self::push_with); with `segment` > 0 (UDP sockets) the data is a train of datagrams of
    /// `segment` bytes each (the last may be shorter) that the kernel sends as separate datagrams
    /// (UDP_SEGMENT): at most 64 of them and 65,000 bytes in all.
    pub fn push_segmented(&mut self, parts: &[&'d [u8]], dest: Option<&SocketAddr>, meta: IpMeta, segment: u16) {
        assert!(!self.is_full() && parts.len() <= MAX_PARTS, "send batch overflow");
        let i = self.len;
        for (k, p) in parts.iter().enumerate() {
            self.st.iovs[i * MAX_PARTS + k] =
                libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() };
        }
        let namelen = match dest {
            Some(d) => to_storage(d, &mut self.st.addrs[i]),
            None => 0,
        };
        let h = &mut self.st.hdrs[i].msg_hdr;
        h.msg_name = if namelen == 0 {
            std::ptr::null_mut()
        } else {
            (&mut self.st.addrs[i] as *mut libc::sockaddr_storage).cast()
        };
        h.msg_namelen = namelen;
        // SAFETY: `i * MAX_PARTS` is inside `iovs`, which holds `capacity * MAX_PARTS` entries.
        h.msg_iov = unsafe { self.st.iovs.as_mut_ptr().add(i * MAX_PARTS) };
        h.msg_iovlen = parts.len();
        let v6 = dest.is_some_and(SocketAddr::is_ipv6);
        let mut used = 0;
        let ctrl = &mut self.st.ctrl[i];
        if let Some(tos) = meta.tos {
            let (level, kind) =
                if v6 { (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) } else { (libc::IPPROTO_IP, libc::IP_TOS) };
            used = put_cmsg_int(ctrl, used, level, kind, i32::from(tos));
        }
        if let Some(ttl) = meta.ttl {
            let (level, kind) =
                if v6 { (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) } else { (libc::IPPROTO_IP, libc::IP_TTL) };
            used = put_cmsg_int(ctrl, used, level, kind, i32::from(ttl));
        }
        if segment > 0 {
            used = put_cmsg(ctrl, used, crate::udp::SOL_UDP_LEVEL, crate::udp::UDP_SEGMENT, &segment.to_ne_bytes());
        }
        let h = &mut self.st.hdrs[i].msg_hdr;
        h.msg_control = if used == 0 { std::ptr::null_mut() } else { ctrl.as_mut_ptr().cast() };
        h.msg_controllen = used as _;
        h.msg_flags = 0;
        self.len += 1;
    }

    /// Sends every queued message on `fd`, retrying after partial sends; messages the kernel refuses
    /// (full socket buffer, unreachable destination) are counted as failed. The batch is empty afterwards.
    pub fn send(&mut self, fd: RawFd) -> SendOutcome {
        self.send_with(fd, |_, _| {})
    }

    /// Like [`send`](Self::send), calling `result(i, sent)` for each queued message `i` in order.
    pub fn send_with(&mut self, fd: RawFd, mut result: impl FnMut(usize, bool)) -> SendOutcome {
        let mut out = SendOutcome::default();
        let mut at = 0;
        while at < self.len {
            let left = (self.len - at) as libc::c_uint;
            // SAFETY: headers `at..len` point at iovecs and names in `st` and at data borrowed for `'d`.
            let r = unsafe { syscall!(sendmmsg(fd, self.st.hdrs.as_mut_ptr().add(at), left, libc::MSG_DONTWAIT)) };
            match r {
                Ok(n) if n > 0 => {
                    for k in at..at + n as usize {
                        result(k, true);
                    }
                    out.sent += n as usize;
                    at += n as usize;
                }
                Ok(_) => {
                    for k in at..self.len {
                        result(k, false);
                    }
                    out.failed += self.len - at;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The first message failed: skip it and go on with the rest.
                    result(at, false);
                    out.failed += 1;
                    at += 1;
                }
            }
        }
        self.len = 0;
        out
    }
}
