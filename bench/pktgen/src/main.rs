//! The small-packet generator of `bench/compare.py --pps`: offers UDP datagrams of many flows at a set rate,
//! as prebuilt Ethernet frames in sendmmsg batches on an AF_PACKET socket past the qdisc, so that neither the
//! sender's IP stack nor a receiving program is what limits the measurement. The far side only binds the
//! port and reads it (`sink`); the bench adds what it read and what found its buffer full.
//!
//! ```text
//! weft-pktgen send DST_IP:PORT --dev IFNAME --src IP --src-mac MAC --dst-mac MAC --rate PPS --seconds S
//!             [--flows N] [--size BYTES]                                       prints "sent N"
//! weft-pktgen sink BIND_IP:PORT --seconds S                                   prints "received N"
//! ```
//!
//! `--rate 0` sends as fast as the device takes frames. `--flows N` varies the source port over N values (N
//! 5-tuples for the switch's flow hash, taking turns batch by batch); `--size` is the UDP payload (default 18:
//! a 64-byte Ethernet frame with its FCS).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("send") => send(&args[1..]),
        Some("sink") => sink(&args[1..]),
        _ => Err(usage("expected send or sink")),
    };
    if let Err(e) = r {
        eprintln!("weft-pktgen: {e}");
        std::process::exit(2);
    }
}

fn usage(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{why}\nusage: weft-pktgen send DST_IP:PORT --dev IFNAME --src IP --src-mac MAC --dst-mac MAC --rate PPS \
             --seconds S [--flows N] [--size BYTES]\n       weft-pktgen sink BIND_IP:PORT --seconds S"
        ),
    )
}

/// The address (first argument) and the `--name value` options after it, each of `names` at most once.
struct Args {
    addr: SocketAddr,
    opts: Vec<(String, String)>,
}

impl Args {
    fn parse(args: &[String], names: &[&str]) -> io::Result<Args> {
        let addr: SocketAddr =
            args.first().ok_or_else(|| usage("missing address"))?.parse().map_err(|_| usage("bad address"))?;
        let mut opts = Vec::new();
        let mut it = args[1..].iter();
        while let Some(k) = it.next() {
            if !names.contains(&k.as_str()) {
                return Err(usage(&format!("unknown option {k}")));
            }
            let v = it.next().ok_or_else(|| usage(&format!("{k} needs a value")))?;
            opts.push((k.clone(), v.clone()));
        }
        Ok(Args { addr, opts })
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.opts.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn num(&self, name: &str) -> io::Result<Option<u64>> {
        self.text(name).map(|v| v.parse().map_err(|_| usage(&format!("{name}: not a number: {v}")))).transpose()
    }

    fn need(&self, name: &str) -> io::Result<u64> {
        self.num(name)?.ok_or_else(|| usage(&format!("{name} is needed")))
    }
}

/// Parses "aa:bb:cc:dd:ee:ff".
fn mac(text: &str) -> io::Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(usage(&format!("bad MAC address {text}")));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| usage(&format!("bad MAC address {text}")))?;
    }
    Ok(out)
}

/// One Ethernet + IPv4 + UDP frame from `src` (port `sport`) to `dst`, `size` bytes of payload, UDP
/// checksum 0 (none, as IPv4 allows).
fn frame(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: SocketAddr, sport: u16, size: usize) -> io::Result<Vec<u8>> {
    let SocketAddr::V4(dst) = dst else { return Err(usage("send takes an IPv4 destination")) };
    let mut f = Vec::with_capacity(42 + size);
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + size) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + size) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(42 + size, 0x5a);
    Ok(f)
}

/// Sends prebuilt frames on an AF_PACKET socket (past the qdisc): the sender's own IP and UDP stack is not
/// what limits the offer.
fn send(args: &[String]) -> io::Result<()> {
    let names = ["--dev", "--src", "--src-mac", "--dst-mac", "--rate", "--seconds", "--flows", "--size"];
    let a = Args::parse(args, &names)?;
    let dst = a.addr;
    let dev = a.text("--dev").ok_or_else(|| usage("--dev is needed"))?;
    let macs = (
        mac(a.text("--src-mac").ok_or_else(|| usage("--src-mac is needed"))?)?,
        mac(a.text("--dst-mac").ok_or_else(|| usage("--dst-mac is needed"))?)?,
    );
    let src: std::net::Ipv4Addr =
        a.text("--src").ok_or_else(|| usage("--src is needed"))?.parse().map_err(|_| usage("bad --src"))?;
    let src = src.octets();
    let rate = a.need("--rate")?;
    let seconds = a.need("--seconds")?;
    let flows = a.num("--flows")?.unwrap_or(64).clamp(1, 4096) as usize;
    let size = a.num("--size")?.unwrap_or(18).clamp(1, 1400) as usize;
    let frames: Vec<Vec<u8>> =
        (0..flows).map(|k| frame(macs, src, dst, 20000 + k as u16, size)).collect::<io::Result<_>>()?;
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let c = std::ffi::CString::new(dev).map_err(|_| usage("bad --dev"))?;
    // SAFETY: `c` is a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(usage(&format!("no interface {dev}")));
    }
    let one: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives for the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&macs.1);
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|k| {
            let f = &frames[k % frames.len()];
            libc::iovec { iov_base: f.as_ptr() as *mut _, iov_len: f.len() }
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = &mut sll as *mut libc::sockaddr_ll as *mut libc::c_void;
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    let mut first = 0usize;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut n = BATCH;
        if rate > 0 {
            // Due by now at `rate`: send what is due, at most a batch; sleep when ahead.
            let due = (now - start).as_secs_f64() * rate as f64;
            let ahead = sent as f64 - due;
            if ahead >= 0.0 {
                let wait = (ahead + 1.0) / rate as f64;
                if wait > 0.000_2 {
                    std::thread::sleep(Duration::from_secs_f64(wait.min(0.01)));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            n = ((-ahead).ceil() as usize).clamp(1, BATCH);
        }
        // The flows take turns: each call starts one flow further on.
        for (k, v) in iov.iter_mut().enumerate().take(n) {
            let f = &frames[(first + k) % frames.len()];
            v.iov_base = f.as_ptr() as *mut _;
        }
        first = (first + 1) % frames.len();
        // SAFETY: `msgs` holds `n` valid headers whose iovecs point into `frames` and whose names point to
        // `sll`, all alive for the call.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r > 0 {
            sent += r as u64;
        } else if r < 0 {
            let e = io::Error::last_os_error();
            // No buffer space: the offer outran the device.
            if !matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) {
                return Err(e);
            }
        }
    }
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    println!("sent {sent}");
    Ok(())
}

/// Binds the destination port and reads it for `--seconds` (recvmmsg, a 16 MiB buffer), then prints how many
/// datagrams it read. Datagrams that find its buffer full are counted by the kernel (RcvbufErrors), so the
/// bench adds those: neither end is what limits the measurement. No datagram draws an ICMP error back.
fn sink(args: &[String]) -> io::Result<()> {
    let a = Args::parse(args, &["--seconds"])?;
    let s = UdpSocket::bind(a.addr)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let big: libc::c_int = 16 << 20;
    // SAFETY: the option value is a c_int that lives for the call (SO_RCVBUFFORCE needs CAP_NET_ADMIN;
    // without it SO_RCVBUF, capped by rmem_max, is what is left).
    unsafe {
        let p = &big as *const libc::c_int as *const libc::c_void;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: b.len() }).collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let end = Instant::now() + Duration::from_secs(a.need("--seconds")?);
    let mut received: u64 = 0;
    while Instant::now() < end {
        // SAFETY: `msgs` holds BATCH valid headers whose iovecs point into `bufs`, alive for the call.
        let r = unsafe {
            libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if r > 0 {
            received += r as u64;
        }
    }
    println!("received {received}");
    Ok(())
}
