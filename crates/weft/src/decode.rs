//! `weft decode FILE`: reads a pcap or pcapng file as a stream and prints each packet — one line (like
//! tshark), a layered tree (`-V`), or one JSON object per line with Wireshark's field names (`--format json`).

use anyhow::Context;
use std::fmt::Write as _;
use std::io::{BufReader, BufWriter, Read, Write};
use weft_wire::capfile::CaptureReader;
use weft_wire::dissect::{dissect, DecodeAs, Dissection, Layer, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Line,
    Tree,
    Json,
}

pub struct Options {
    pub file: String,
    pub style: Style,
    pub decode_as: DecodeAs,
    /// Stop after this many packets.
    pub count: Option<u64>,
}

/// Decodes the whole file to stdout. Returns how many packets were read.
pub fn run(o: &Options) -> anyhow::Result<u64> {
    let src: Box<dyn Read> = if o.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&o.file).with_context(|| format!("cannot open {}", o.file))?)
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let n = decode(BufReader::with_capacity(1 << 20, src), o, &mut out).with_context(|| o.file.clone())?;
    out.flush()?;
    Ok(n)
}

/// Decodes a capture from `src` into `out`.
pub fn decode(src: impl Read, o: &Options, out: &mut impl Write) -> anyhow::Result<u64> {
    decode_inner(src, o, out, false)
}

/// Decodes a live stream, writing each packet out as soon as it is read.
pub fn decode_live(src: impl Read, o: &Options, out: &mut impl Write) -> anyhow::Result<u64> {
    decode_inner(src, o, out, true)
}

fn decode_inner(src: impl Read, o: &Options, out: &mut impl Write, live: bool) -> anyhow::Result<u64> {
    let mut reader = CaptureReader::new(src)?;
    let mut spare: Dissection<'static> = Dissection::default();
    let mut text = String::with_capacity(512);
    let mut fields: Vec<(&'static str, Value<'static>)> = Vec::with_capacity(64);
    let mut first_ts = None;
    let mut n = 0u64;
    while let Some(rec) = reader.next() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.flush()?;
                return Err(anyhow::anyhow!("after packet {n}: {e}"));
            }
        };
        n += 1;
        let mut d = std::mem::take(&mut spare).recycle();
        dissect(rec.linktype, rec.data, &o.decode_as, &mut d);
        let t0 = *first_ts.get_or_insert(rec.ts_nanos);
        let rel = rec.ts_nanos.saturating_sub(t0);
        text.clear();
        match o.style {
            Style::Line => line(&mut text, n, rel, rec.orig_len, &d)?,
            Style::Tree => tree(&mut text, n, rec.orig_len, rec.data.len(), &d)?,
            Style::Json => {
                let mut scratch = weft_wire::dissect::reuse(std::mem::take(&mut fields));
                json(&mut text, n, rec.ts_nanos, rec.orig_len, rec.data.len(), &d, &mut scratch)?;
                fields = weft_wire::dissect::reuse(scratch);
            }
        }
        out.write_all(text.as_bytes())?;
        if live {
            out.flush()?;
        }
        spare = d.recycle();
        if o.count.is_some_and(|c| n >= c) {
            break;
        }
    }
    Ok(n)
}

fn line(out: &mut String, n: u64, rel: u64, len: usize, d: &Dissection<'_>) -> std::fmt::Result {
    let (src, dst) = d.addresses().unwrap_or_default();
    write!(
        out,
        "{n:>5} {}.{:06} {src} → {dst} {} {len} ",
        rel / 1_000_000_000,
        (rel % 1_000_000_000) / 1000,
        d.protocol()
    )?;
    d.info(out)?;
    if let Some(m) = d.malformed {
        write!(out, " [Malformed Packet: {}: {}]", m.layer, m.error)?;
    }
    out.push('\n');
    Ok(())
}

fn tree(out: &mut String, n: u64, len: usize, caplen: usize, d: &Dissection<'_>) -> std::fmt::Result {
    writeln!(out, "Frame {n}: {len} bytes on wire, {caplen} bytes captured")?;
    for l in &d.layers {
        l.title(out)?;
        out.push('\n');
        let mut err = Ok(());
        l.fields(&mut |name, v| {
            if err.is_ok() {
                err = writeln!(out, "    {name}: {v}");
            }
        });
        err?;
    }
    if let Some(m) = d.malformed {
        writeln!(out, "[Malformed Packet: {}: {}]", m.layer, m.error)?;
    }
    out.push('\n');
    Ok(())
}

fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// One JSON object per packet: `{"frame":…, "time":…, "len":…, "caplen":…, "protocol":…, "info":…,
/// "layers":[{"name":"eth","fields":{"eth.src":"…",…}},…], "malformed":null|{"layer":…,"error":…}}`. Field
/// values are strings as `tshark -T fields` prints them; a field a layer has more than once (Geneve options)
/// is an array of them.
fn json<'a>(
    out: &mut String,
    n: u64,
    ts: u64,
    len: usize,
    caplen: usize,
    d: &Dissection<'a>,
    fields: &mut Vec<(&'static str, Value<'a>)>,
) -> std::fmt::Result {
    write!(
        out,
        "{{\"frame\":{n},\"time\":\"{}.{:09}\",\"len\":{len},\"caplen\":{caplen},\"protocol\":\"",
        ts / 1_000_000_000,
        ts % 1_000_000_000
    )?;
    escape(out, d.protocol());
    out.push_str("\",\"info\":\"");
    let mut info = String::new();
    d.info(&mut info)?;
    escape(out, &info);
    out.push_str("\",\"layers\":[");
    for (i, l) in d.layers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":\"");
        out.push_str(l.name());
        out.push_str("\",\"fields\":{");
        if matches!(l, Layer::Geneve { .. }) {
            // The only layer with repeated field names (one set per option): gather them into arrays.
            fields.clear();
            l.fields(&mut |name, v| fields.push((name, v)));
            let mut first = true;
            for (k, (name, _)) in fields.iter().enumerate() {
                if fields[..k].iter().any(|(n, _)| n == name) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                let count = fields.iter().filter(|(n, _)| n == name).count();
                if count > 1 {
                    out.push('[');
                }
                for (j, (_, v)) in fields.iter().filter(|(n, _)| n == name).enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    v.push_to(out);
                    out.push('"');
                }
                if count > 1 {
                    out.push(']');
                }
            }
        } else {
            let mut first = true;
            l.fields(&mut |name, v| {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                out.push_str(name);
                out.push_str("\":\"");
                v.push_to(out);
                out.push('"');
            });
        }
        out.push_str("}}");
    }
    out.push_str("],\"malformed\":");
    match d.malformed {
        Some(m) => {
            write!(out, "{{\"layer\":\"{}\",\"error\":\"", m.layer)?;
            escape(out, &m.error.to_string());
            out.push_str("\"}");
        }
        None => out.push_str("null"),
    }
    out.push_str("}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/captures/geneve-ovs.pcap")).unwrap()
    }

    fn run_on(data: &[u8], style: Style) -> String {
        let (text, r) = try_on(data, style);
        r.unwrap();
        text
    }

    fn try_on(data: &[u8], style: Style) -> (String, anyhow::Result<u64>) {
        let o = Options { file: String::new(), style, decode_as: DecodeAs::default(), count: None };
        let mut out = Vec::new();
        let r = decode(data, &o, &mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    #[test]
    fn one_line_per_packet_like_tshark() {
        let text = run_on(&file(), Style::Line);
        let first = text.lines().next().unwrap();
        assert!(first.contains("ARP") && first.contains("Who has 198.51.100.2? Tell 198.51.100.1"), "{first}");
        assert!(text.contains("Echo (ping) request  id=0x0812, seq=1/256, ttl=64"), "{text}");
    }

    #[test]
    fn json_has_wireshark_field_names() {
        let text = run_on(&file(), Style::Json);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let layers = v["layers"].as_array().unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["eth", "ip", "udp", "geneve", "eth", "arp"]);
        assert_eq!(layers[3]["fields"]["geneve.vni"], "0x00002a");
        assert_eq!(layers[1]["fields"]["ip.src"], "192.0.2.1");
        assert!(v["malformed"].is_null());
    }

    #[test]
    fn truncated_file_and_malformed_packet() {
        let f = file();
        // A file cut inside its last record: every whole packet is shown, then the error.
        let (text, r) = try_on(&f[..f.len() - 20], Style::Tree);
        assert!(text.contains("Generic Network Virtualization Encapsulation"));
        assert_eq!(text.matches("Frame ").count(), 7);
        assert!(r.unwrap_err().to_string().contains("after packet 7: truncated"));
        // Cut the first packet inside its inner ARP: shown as malformed at the ARP layer.
        let mut short = f[..24].to_vec();
        let caplen = 0x40u32;
        short.extend_from_slice(&[0; 8]);
        short.extend_from_slice(&caplen.to_le_bytes());
        short.extend_from_slice(&caplen.to_le_bytes());
        short.extend_from_slice(&f[40..40 + caplen as usize]);
        let text = run_on(&short, Style::Line);
        assert!(text.contains("[Malformed Packet: arp:"), "{text}");
    }
}
