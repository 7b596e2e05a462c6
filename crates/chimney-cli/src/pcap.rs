//! `--pcap FILE`: every packet the target received and sent, as a classic pcap file with
//! `LINKTYPE_RAW` (bare IPv4/IPv6 packets), which Wireshark and `tshark` read. Written with
//! the `pcap-file` crate (pure Rust, no libpcap). GSO super-packets are written as the one
//! 64 KB packet the target received.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chimney::Instant;
use chimney_linux::Tap;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

/// An open capture file.
pub struct Pcap {
    w: Option<PcapWriter<BufWriter<File>>>,
    epoch: Duration,
    /// Packets written.
    pub packets: u64,
    /// The first write error, if any (captures never stop the transfer).
    pub error: Option<String>,
}

impl Pcap {
    /// Creates `path`; timestamps are the wall clock at creation plus each packet's offset.
    pub fn create(path: &Path) -> Result<Pcap, String> {
        let f = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let header = PcapHeader { snaplen: 262_144, datalink: DataLink::RAW, ..PcapHeader::default() };
        let w = PcapWriter::with_header(BufWriter::new(f), header)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Pcap { w: Some(w), epoch, packets: 0, error: None })
    }

    /// Appends one IP packet seen at `t` (time since the run began).
    pub fn write(&mut self, t: Instant, data: &[u8]) {
        let ts = self.epoch + Duration::from_nanos(t.as_nanos());
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(w) = self.w.as_mut() else { return };
        match w.write_packet(&PcapPacket::new(ts, len, data)) {
            Ok(_) => self.packets += 1,
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e.to_string());
                }
            }
        }
    }

    /// Flushes what is buffered and closes the file; later packets are not written.
    pub fn close(&mut self) -> Result<(), String> {
        use std::io::Write;
        match self.w.take() {
            Some(w) => w.into_writer().flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// A capture shared by several drivers (one per TUN queue).
pub type Shared = Arc<Mutex<Pcap>>;

/// Opens `path` for sharing.
pub fn open(path: &Path) -> Result<Shared, String> {
    Ok(Arc::new(Mutex::new(Pcap::create(path)?)))
}

/// A driver tap writing into `p`.
pub fn tap(p: &Shared) -> Tap {
    let p = Arc::clone(p);
    Box::new(move |t, _dir, data| p.lock().unwrap_or_else(|e| e.into_inner()).write(t, data))
}

/// Closes `p` and reports the packet count or the first error.
pub fn finish(p: &Shared) -> Result<u64, String> {
    let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
    g.close()?;
    match g.error.take() {
        Some(e) => Err(e),
        None => Ok(g.packets),
    }
}
