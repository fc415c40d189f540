//! Added delay and random loss on one member's link, as `tc netem` would
//! add them, done in user space because this kernel has no netem (nor any
//! other queueing discipline that delays or drops at random).
//!
//! The member's bridge-side veth leaves the bridge; a second veth pair takes
//! its place on it; two threads per direction copy every Ethernet frame
//! between the two with packet sockets, dropping each with the loss
//! probability and sending the rest after the delay. Frames, not bytes: ARP,
//! TCP's retransmissions and its congestion control behave as on a real
//! lossy, slow link.
//!
//! Frames are copied as they are, so the kernel must not hand over frames it
//! means to finish later (checksums left to the device, segments merged by
//! TSO/GSO). [`without_offloads`] turns those off with `ethtool` on every
//! device that can send towards the forwarder.

use crate::process::LabError;
use nix::libc;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrLike, bind,
    recvfrom, send, setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a link suffers, each way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Added to every frame's trip.
    pub delay: Duration,
    /// The chance, from 0 to below 1, that a frame is dropped.
    pub loss: f64,
}

impl Impairment {
    fn check(&self) -> Result<(), LabError> {
        if (0.0..1.0).contains(&self.loss) {
            Ok(())
        } else {
            Err(LabError::Setup(format!(
                "loss is a probability from 0 to below 1, not {}",
                self.loss
            )))
        }
    }
}

/// How often the threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Larger than any frame once offloads are off (MTU 1500 plus headers).
const FRAME_MAX: usize = 65_536;
/// `sll_pkttype` of a frame this host sent on the interface: the copy
/// the forwarder itself sent, not one to forward.
const PACKET_OUTGOING: u8 = 4;

/// The threads that carry frames between two interfaces; stopped on drop.
#[derive(Debug)]
pub(crate) struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts carrying frames both ways between the interfaces `a` and `b`
    /// of the calling namespace, as `impairment` says.
    pub(crate) fn start(a: &str, b: &str, impairment: Impairment) -> Result<Forwarder, LabError> {
        impairment.check()?;
        let a = Arc::new(packet_socket(a)?);
        let b = Arc::new(packet_socket(b)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to) in [(a.clone(), b.clone()), (b, a)] {
            let (queue, queued) = mpsc::channel::<(Instant, Vec<u8>)>();
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                receive(&from, &queue, impairment, &s)
            }));
            let s = stop.clone();
            threads.push(std::thread::spawn(move || deliver(&to, &queued, &s)));
        }
        Ok(Forwarder { stop, threads })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads frames arriving on `socket` and queues those not lost, each with
/// the time it is due.
fn receive(
    socket: &OwnedFd,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    impairment: Impairment,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; FRAME_MAX];
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match recvfrom::<LinkAddr>(socket.as_raw_fd(), &mut buf) {
            Ok(received) => received,
            // The receive timeout, or a signal: look at the flag again.
            Err(_) => continue,
        };
        if from.is_some_and(|f| f.pkttype() == PACKET_OUTGOING) {
            continue;
        }
        if impairment.loss > 0.0 && rand::random::<f64>() < impairment.loss {
            continue;
        }
        let due = Instant::now() + impairment.delay;
        if queue.send((due, buf[..len].to_vec())).is_err() {
            return;
        }
    }
}

/// Sends each queued frame on `socket` when it is due. The delay is the
/// same for every frame, so the queue is in due order.
fn deliver(socket: &OwnedFd, queued: &mpsc::Receiver<(Instant, Vec<u8>)>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (due, frame) = match queued.recv_timeout(POLL) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // A frame the interface refuses is lost, as on a real link.
        let _ = send(socket.as_raw_fd(), &frame, MsgFlags::empty());
    }
}

/// A packet socket that receives every frame arriving on `interface` and
/// sends frames out of it.
fn packet_socket(interface: &str) -> Result<OwnedFd, LabError> {
    let failed = |what: &str, e: nix::Error| LabError::Setup(format!("{what} on {interface}: {e}"));
    let index = nix::net::if_::if_nametoindex(interface)
        .map_err(|e| failed("cannot find the interface", e))?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .map_err(|e| failed("cannot open a packet socket (needs CAP_NET_RAW)", e))?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `sll` is a whole, initialised sockaddr_ll and the length given
    // is its size, which is what `LinkAddr` wraps.
    let addr = unsafe {
        LinkAddr::from_raw(
            (&raw const sll).cast::<libc::sockaddr>(),
            Some(std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t),
        )
    }
    .ok_or_else(|| LabError::Setup(format!("cannot address the interface {interface}")))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| failed("cannot bind a packet socket", e))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::milliseconds(POLL.as_millis() as i64),
    )
    .map_err(|e| failed("cannot set a receive timeout", e))?;
    Ok(fd)
}

/// `ethtool` arguments that make `dev` hand over whole frames with their
/// checksums: no checksum offload, no segmentation offload.
pub(crate) fn without_offloads(dev: &str) -> [&str; 8] {
    ["-K", dev, "tx", "off", "tso", "off", "gso", "off"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_must_be_a_probability_below_one() {
        for loss in [-0.1, 1.0, 1.5, f64::NAN] {
            let bad = Impairment {
                delay: Duration::ZERO,
                loss,
            };
            let message = bad.check().unwrap_err().to_string();
            assert!(message.contains("loss is a probability"), "{message}");
        }
        for loss in [0.0, 0.25, 0.99] {
            let fine = Impairment {
                delay: Duration::from_millis(100),
                loss,
            };
            assert!(fine.check().is_ok(), "{loss}");
        }
    }
}
