//! The user-space impairment of a member's link: frames arrive late by the
//! delay, a share of them never, and after `heal` the link is whole again.
//! Needs root, as every network-namespace test; scripts/test-all runs as root.

use raftgres_lab::{Impairment, LabNetwork, NetnsMember, enter_netns};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const PORT: u16 = 7400;
const DATAGRAMS: usize = 200;

fn network() -> (LabNetwork, NetnsMember, NetnsMember) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "network namespaces need root; run the tests as root, as scripts/test-all does"
    );
    let net = LabNetwork::create(2).expect("create the lab network");
    let members = net.members();
    (net, members[0].clone(), members[1].clone())
}

/// Runs `f` on a thread inside `ns`.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter_netns(&ns).expect("enter the namespace");
        f()
    })
    .join()
    .expect("thread inside the namespace")
}

/// How long a TCP handshake from `from` to a listener on `to` takes.
fn connect_time(from: &NetnsMember, to: &NetnsMember) -> Duration {
    let addr = SocketAddr::new(to.addr, PORT);
    let listener = inside(&to.ns, move || TcpListener::bind(addr).expect("listen"));
    inside(&from.ns, move || {
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        let took = started.elapsed();
        drop((stream, listener));
        took
    })
}

/// How many of [`DATAGRAMS`] sent from `from` reach `to`.
fn datagrams_through(from: &NetnsMember, to: &NetnsMember) -> usize {
    let addr = SocketAddr::new(to.addr, PORT);
    let receiver = inside(&to.ns, move || {
        let socket = UdpSocket::bind(addr).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        socket
    });
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut got = 0;
        while receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    let from_addr = SocketAddr::new(from.addr, 0);
    inside(&from.ns, move || {
        let socket = UdpSocket::bind(from_addr).expect("bind");
        for i in 0..DATAGRAMS {
            socket.send_to(&i.to_be_bytes(), addr).expect("send");
            // Paced, so that no receive buffer overflows: only the
            // impairment may lose a datagram.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    counting.join().expect("counting thread")
}

#[test]
fn delay_applies_each_way_and_heal_removes_it() {
    let (net, one, two) = network();
    let delay = Duration::from_millis(500);
    net.impair(&one.ns, Impairment { delay, loss: 0.0 })
        .expect("impair");
    // The SYN leaves through the impaired link and the SYN-ACK comes back
    // through it: two delays at least, however fast the machine.
    let took = connect_time(&one, &two);
    assert!(took >= 2 * delay, "handshake took {took:?}");
    assert_eq!(
        datagrams_through(&two, &one),
        DATAGRAMS,
        "delay alone loses nothing"
    );
    net.heal(&one.ns).expect("heal");
    // Between namespaces on one machine a handshake takes well under a
    // millisecond; a quarter of the impaired minimum is a wide margin.
    let took = connect_time(&one, &two);
    assert!(took < delay / 2, "healed handshake took {took:?}");
    assert_eq!(datagrams_through(&two, &one), DATAGRAMS, "healed");
}

#[test]
fn loss_drops_a_share_of_frames_and_heal_stops_it() {
    let (net, one, two) = network();
    net.impair(
        &one.ns,
        Impairment {
            delay: Duration::ZERO,
            loss: 0.5,
        },
    )
    .expect("impair");
    let got = datagrams_through(&two, &one);
    // Binomial(200, 0.5): 100 +- 7 (one standard deviation); the bounds
    // are more than seven deviations away.
    assert!((50..=150).contains(&got), "{got} of {DATAGRAMS} arrived");
    net.heal(&one.ns).expect("heal");
    assert_eq!(datagrams_through(&two, &one), DATAGRAMS);
}

#[test]
fn a_link_is_impaired_once_and_loss_is_checked() {
    let (net, one, _) = network();
    let fine = Impairment {
        delay: Duration::from_millis(10),
        loss: 0.1,
    };
    net.impair(&one.ns, fine).expect("impair");
    let twice = net.impair(&one.ns, fine).unwrap_err().to_string();
    assert!(twice.contains("impaired already"), "{twice}");
    net.heal(&one.ns).expect("heal");
    let certain = Impairment {
        delay: Duration::ZERO,
        loss: 1.0,
    };
    let refused = net.impair(&one.ns, certain).unwrap_err().to_string();
    assert!(refused.contains("loss is a probability"), "{refused}");
}
