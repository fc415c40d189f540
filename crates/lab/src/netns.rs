//! Network namespaces for fault injection: one namespace per member, each
//! joined by a veth pair to a bridge in the root namespace, so a test can cut
//! one member off (its veth goes down) and heal it again.
//!
//! Every address lives only on these namespaces and the bridge: members get
//! `10.200.K.2..`, the bridge `10.200.K.1/24` (so the test process, in the
//! root namespace, reaches every member), and there is no default route
//! inside a namespace, so nothing is sent to any real network. `K` is chosen
//! so the /24 overlaps no route or address the machine already has.
//!
//! Names carry this process's PID and a counter, so parallel or leftover runs
//! never clash. [`LabNetwork`] removes exactly what it created when dropped.
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and iproute2's `ip`.

use crate::impair::{Forwarder, Impairment, without_offloads};
use crate::process::LabError;
use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where `ip netns add NAME` puts its handle.
const NETNS_DIR: &str = "/var/run/netns";
/// An `ip` command that has not finished by then is killed and reported.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// Interface names are at most 15 bytes; one digit for the member index.
const MAX_MEMBERS: usize = 9;

/// One lab member's namespace and the address its agent and Postgres use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsMember {
    /// A name under `/var/run/netns`.
    pub ns: String,
    pub addr: IpAddr,
}

/// One member's link: its namespace, the bridge-side veth end, its address.
#[derive(Debug)]
struct Link {
    ns: String,
    /// The end on the bridge, in the root namespace.
    veth: String,
    /// The end inside the namespace, which holds the address.
    peer: String,
    addr: Ipv4Addr,
}

/// A bridge in the root namespace and one namespace per member.
#[derive(Debug)]
pub struct LabNetwork {
    /// PID and counter: part of every name this network creates.
    tag: String,
    bridge: String,
    bridge_addr: Ipv4Addr,
    /// What exists now, so a half-finished `create` cleans up too.
    bridge_made: bool,
    namespaces_made: Vec<String>,
    links: Vec<Link>,
    /// Links that carry their frames through a [`Forwarder`] now.
    impaired: Mutex<Vec<Impaired>>,
}

/// One member's link taken off the bridge by [`LabNetwork::impair`].
#[derive(Debug)]
struct Impaired {
    ns: String,
    /// The veth pair in its place: one end on the bridge, the other the
    /// forwarder's.
    stand_in: String,
    /// Dropped (so stopped) before the interfaces change back.
    forwarder: Forwarder,
}

fn setup(message: String) -> LabError {
    LabError::Setup(message)
}

fn tool_binary(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `ip ARGS` to completion within [`IP_TIMEOUT`]; its stdout on success.
fn ip(args: &[&str]) -> Result<String, LabError> {
    run_tool("ip", args)
}

/// Runs `tc ARGS` (iproute2's traffic control) like [`ip`].
fn tc(args: &[&str]) -> Result<String, LabError> {
    run_tool("tc", args)
}

fn run_tool(name: &str, args: &[&str]) -> Result<String, LabError> {
    let shown = format!("{name} {}", args.join(" "));
    let mut child = Command::new(tool_binary(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            setup(format!(
                "cannot run `{shown}`: {e}; install {} to use network namespaces",
                if name == "ethtool" {
                    "ethtool"
                } else {
                    "iproute2"
                }
            ))
        })?;
    let deadline = Instant::now() + IP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(setup(format!(
                    "`{shown}` did not finish within {IP_TIMEOUT:?}"
                )));
            }
            Err(e) => return Err(setup(format!("cannot wait for `{shown}`: {e}"))),
        }
    }
    // The output of these commands is small, so it fit in the pipes.
    let output = child
        .wait_with_output()
        .map_err(|e| setup(format!("cannot read the output of `{shown}`: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(setup(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// IPv4 prefixes (`a.b.c.d/len`) the root namespace already routes or owns.
fn used_prefixes() -> Result<Vec<(Ipv4Addr, u8)>, LabError> {
    let mut out = Vec::new();
    let routes = ip(&["-4", "route", "show", "table", "all"])?;
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let route_targets = routes.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        let first = words.next()?;
        // `local 10.0.0.1 ...`, `broadcast ...` in other tables.
        match first {
            "local" | "broadcast" | "unicast" | "anycast" | "multicast" => words.next(),
            _ => Some(first),
        }
    });
    let addr_targets = addrs.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next()
    });
    for target in route_targets.chain(addr_targets) {
        if target == "default" {
            continue;
        }
        let (addr, len) = target.split_once('/').unwrap_or((target, "32"));
        if let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) {
            out.push((addr, len.min(32)));
        }
    }
    Ok(out)
}

fn overlaps((a, a_len): (Ipv4Addr, u8), (b, b_len): (Ipv4Addr, u8)) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(a) & mask == u32::from(b) & mask
}

fn exists(ns: &str, interfaces: &[String]) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
        || interfaces
            .iter()
            .any(|i| Path::new("/sys/class/net").join(i).exists())
}

impl LabNetwork {
    /// Creates the bridge and `members` namespaces, each with loopback up and
    /// one address on a veth whose other end is on the bridge.
    pub fn create(members: usize) -> Result<LabNetwork, LabError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(setup(
                "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)".to_owned(),
            ));
        }
        if members == 0 || members > MAX_MEMBERS {
            return Err(setup(format!(
                "a lab network holds 1 to {MAX_MEMBERS} members, not {members}"
            )));
        }
        let subnet = Self::free_subnet()?;
        let [a, b, c, _] = subnet.octets();
        let (tag, names) = Self::free_names(members)?;
        let mut net = LabNetwork {
            bridge: format!("rg{tag}b"),
            tag,
            bridge_addr: Ipv4Addr::new(a, b, c, 1),
            bridge_made: false,
            namespaces_made: Vec::new(),
            links: Vec::new(),
            impaired: Mutex::new(Vec::new()),
        };
        // On error `net` is dropped here, which removes what was made so far.
        net.build(&names, subnet)?;
        Ok(net)
    }

    /// The first `10.200.K.0/24` that overlaps nothing the machine routes.
    fn free_subnet() -> Result<Ipv4Addr, LabError> {
        let used = used_prefixes()?;
        let start = std::process::id() % 250;
        (0..250)
            .map(|i| Ipv4Addr::new(10, 200, ((start + i) % 250 + 1) as u8, 0))
            .find(|candidate| !used.iter().any(|u| overlaps(*u, (*candidate, 24))))
            .ok_or_else(|| setup("every 10.200.K.0/24 is already in use on this machine".into()))
    }

    /// A tag (PID and counter, in hex) whose names are all unused, with the
    /// namespace names of the members.
    fn free_names(members: usize) -> Result<(String, Vec<String>), LabError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 16;
            let tag = format!("{:x}{n:x}", std::process::id());
            let namespaces: Vec<String> = (1..=members)
                .map(|i| format!("raftgres-{tag}-node{i}"))
                .collect();
            let mut interfaces = vec![format!("rg{tag}b")];
            for i in 1..=members {
                interfaces.push(format!("rg{tag}v{i}"));
                interfaces.push(format!("rg{tag}p{i}"));
                interfaces.push(format!("rg{tag}x{i}"));
                interfaces.push(format!("rg{tag}y{i}"));
            }
            if !namespaces.iter().any(|ns| exists(ns, &interfaces)) {
                return Ok((tag, namespaces));
            }
        }
        Err(setup(
            "cannot find unused namespace and interface names for this process".into(),
        ))
    }

    fn build(&mut self, namespaces: &[String], subnet: Ipv4Addr) -> Result<(), LabError> {
        let bridge = self.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge_made = true;
        let bridge_cidr = format!("{}/24", self.bridge_addr);
        ip(&["addr", "add", &bridge_cidr, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let tag = self.tag.clone();
        let [a, b, c, _] = subnet.octets();
        for (i, ns) in namespaces.iter().enumerate() {
            let index = i + 1;
            let veth = format!("rg{tag}v{index}");
            let peer = format!("rg{tag}p{index}");
            let addr = Ipv4Addr::new(a, b, c, 1 + index as u8);
            ip(&["netns", "add", ns])?;
            self.namespaces_made.push(ns.clone());
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", ns,
            ])?;
            self.links.push(Link {
                ns: ns.clone(),
                veth: veth.clone(),
                peer: peer.clone(),
                addr,
            });
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &peer])?;
            ip(&["-n", ns, "link", "set", &peer, "up"])?;
        }
        self.pin_neighbours()
    }

    /// Fixes every link-layer address on the network. A one-way cut drops
    /// ARP too, so without this a member would lose the way to its peers
    /// (their replies never arrive) and a one-way partition would become a
    /// two-way one as soon as a neighbour entry aged.
    fn pin_neighbours(&self) -> Result<(), LabError> {
        let bridge_mac = mac(&ip(&["-o", "link", "show", "dev", &self.bridge])?)?;
        // A bridge otherwise takes a port's address, which can change.
        ip(&["link", "set", "dev", &self.bridge, "address", &bridge_mac])?;
        let mut macs = Vec::new();
        for link in &self.links {
            macs.push(mac(&ip(&[
                "-n", &link.ns, "-o", "link", "show", "dev", &link.peer,
            ])?)?);
        }
        let bridge_addr = self.bridge_addr.to_string();
        for (link, link_mac) in self.links.iter().zip(&macs) {
            let addr = link.addr.to_string();
            ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                link_mac,
                "dev",
                &self.bridge,
                "nud",
                "permanent",
            ])?;
            ip(&[
                "-n",
                &link.ns,
                "neigh",
                "replace",
                &bridge_addr,
                "lladdr",
                &bridge_mac,
                "dev",
                &link.peer,
                "nud",
                "permanent",
            ])?;
            for (other, other_mac) in self.links.iter().zip(&macs) {
                if other.ns == link.ns {
                    continue;
                }
                let other_addr = other.addr.to_string();
                ip(&[
                    "-n",
                    &link.ns,
                    "neigh",
                    "replace",
                    &other_addr,
                    "lladdr",
                    other_mac,
                    "dev",
                    &link.peer,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        Ok(())
    }

    /// Each member's namespace and address, in member order (node1 first).
    pub fn members(&self) -> Vec<NetnsMember> {
        self.links
            .iter()
            .map(|l| NetnsMember {
                ns: l.ns.clone(),
                addr: IpAddr::V4(l.addr),
            })
            .collect()
    }

    /// The root namespace's address on the bridge, from which the test
    /// process reaches the members.
    pub fn bridge_addr(&self) -> IpAddr {
        IpAddr::V4(self.bridge_addr)
    }

    fn link(&self, ns: &str) -> Result<&Link, LabError> {
        self.links
            .iter()
            .find(|l| l.ns == ns)
            .ok_or_else(|| setup(format!("no namespace {ns} in this lab network")))
    }

    /// Cuts one member off from everyone, the root namespace included: the
    /// bridge-side end of its veth goes down. Established connections stall
    /// as on a real partition (no resets).
    pub fn isolate(&self, ns: &str) -> Result<(), LabError> {
        let veth = &self.link(ns)?.veth;
        ip(&["link", "set", veth, "down"]).map(drop)
    }

    /// A one-way partition: every packet sent to the member is dropped,
    /// while what it sends still arrives. A token bucket whose bucket is
    /// smaller than any packet drops them all (this kernel's choice of
    /// queueing disciplines need not include netem).
    pub fn cut_inbound(&self, ns: &str) -> Result<(), LabError> {
        let veth = &self.link(ns)?.veth;
        tc(&drop_all_args(veth, None)).map(drop)
    }

    /// The other one-way partition: every packet the member sends is
    /// dropped, while what is sent to it still arrives.
    pub fn cut_outbound(&self, ns: &str) -> Result<(), LabError> {
        let link = self.link(ns)?;
        tc(&drop_all_args(&link.peer, Some(&link.ns))).map(drop)
    }

    /// Delays and drops frames on one member's link, both ways, as
    /// `impairment` says (see [`crate::impair`]). Offloads stay off on the
    /// whole network afterwards, which changes nothing but speed.
    pub fn impair(&self, ns: &str, impairment: Impairment) -> Result<(), LabError> {
        let link = self.link(ns)?;
        let mut impaired = self.impaired.lock().unwrap_or_else(|e| e.into_inner());
        if impaired.iter().any(|i| i.ns == ns) {
            return Err(setup(format!(
                "{ns}'s link is impaired already; heal it first"
            )));
        }
        run_tool("ethtool", &without_offloads(&self.bridge))?;
        let ethtool = tool_binary("ethtool");
        let ethtool = ethtool.to_string_lossy();
        for other in &self.links {
            let exec = ["netns", "exec", &other.ns, &ethtool];
            ip(&[&exec[..], &without_offloads(&other.peer)].concat())?;
        }
        let index = &link.veth[link.veth.len() - 1..];
        let stand_in = format!("rg{}x{index}", self.tag);
        let bridge_end = format!("rg{}y{index}", self.tag);
        ip(&[
            "link",
            "add",
            &stand_in,
            "type",
            "veth",
            "peer",
            "name",
            &bridge_end,
        ])?;
        let started = (|| {
            ip(&["link", "set", &bridge_end, "master", &self.bridge])?;
            ip(&["link", "set", &bridge_end, "up"])?;
            ip(&["link", "set", &stand_in, "up"])?;
            ip(&["link", "set", &stand_in, "promisc", "on"])?;
            ip(&["link", "set", &link.veth, "promisc", "on"])?;
            ip(&["link", "set", &link.veth, "nomaster"])?;
            Forwarder::start(&link.veth, &stand_in, impairment)
        })();
        match started {
            Ok(forwarder) => {
                impaired.push(Impaired {
                    ns: ns.to_owned(),
                    stand_in,
                    forwarder,
                });
                Ok(())
            }
            Err(e) => {
                let _ = ip(&["link", "del", &stand_in]);
                let _ = ip(&["link", "set", &link.veth, "master", &self.bridge]);
                Err(e)
            }
        }
    }

    /// Undoes [`LabNetwork::isolate`], [`LabNetwork::cut_inbound`],
    /// [`LabNetwork::cut_outbound`] and [`LabNetwork::impair`].
    pub fn heal(&self, ns: &str) -> Result<(), LabError> {
        let link = self.link(ns)?;
        let mut impaired = self.impaired.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = impaired.iter().position(|i| i.ns == ns) {
            let Impaired {
                stand_in,
                forwarder,
                ..
            } = impaired.remove(at);
            drop(forwarder);
            ip(&["link", "set", &link.veth, "master", &self.bridge])?;
            // Deleting one end of a veth pair deletes both.
            ip(&["link", "del", &stand_in])?;
        }
        drop(impaired);
        // Absent disciplines are no error here: heal what was cut.
        let _ = tc(&["qdisc", "del", "dev", &link.veth, "root"]);
        let _ = tc(&["-n", &link.ns, "qdisc", "del", "dev", &link.peer, "root"]);
        ip(&["link", "set", &link.veth, "up"]).map(drop)
    }

    /// Removes the veths, the bridge and the namespaces this network made.
    /// Processes still inside a namespace keep it alive (unnamed) until they
    /// exit, so stop them first. Idempotent; errors are ignored (something
    /// may already be gone).
    pub fn teardown(&mut self) {
        for impaired in self
            .impaired
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            drop(impaired.forwarder);
            let _ = ip(&["link", "del", &impaired.stand_in]);
        }
        for link in self.links.drain(..) {
            // Deleting one end of a veth pair deletes both.
            let _ = ip(&["link", "del", &link.veth]);
        }
        if std::mem::take(&mut self.bridge_made) {
            let _ = ip(&["link", "del", &self.bridge]);
        }
        for ns in self.namespaces_made.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

impl Drop for LabNetwork {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `tc` arguments that drop every packet leaving `dev` (in namespace `ns`).
fn drop_all_args<'a>(dev: &'a str, ns: Option<&'a str>) -> Vec<&'a str> {
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend([
        "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "8bit", "burst", "10b", "limit",
        "1b",
    ]);
    args
}

/// The `link/ether` address in `ip -o link show` output.
fn mac(line: &str) -> Result<String, LabError> {
    let mut words = line.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .map(str::to_owned)
        .ok_or_else(|| setup(format!("no link-layer address in `{}`", line.trim())))
}

fn open_netns(ns: &str) -> Result<File, LabError> {
    let path = Path::new(NETNS_DIR).join(ns);
    File::open(&path).map_err(|source| LabError::Io { path, source })
}

/// Moves the calling thread (only it) into the network namespace `ns`:
/// sockets it opens afterwards belong to that namespace. A test uses this
/// on a thread of its own to reach a member that is cut off from the root
/// namespace.
pub fn enter_netns(ns: &str) -> Result<(), LabError> {
    let file = open_netns(ns)?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| setup(format!("cannot enter network namespace {ns}: {e}")))
}

/// Spawns `command` inside the network namespace `ns`, with no wrapper
/// process: a short-lived thread enters the namespace and forks from there,
/// and a child inherits its forking thread's namespaces. (Entering it in
/// `pre_exec` would come after the child drops root for `uid`, too late.)
pub(crate) fn spawn_in_netns(ns: &str, command: &mut Command) -> Result<Child, LabError> {
    let file = open_netns(ns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| setup(format!("cannot enter network namespace {ns}: {e}")))?;
                command.spawn().map_err(|source| LabError::Io {
                    path: PathBuf::from(command.get_program()),
                    source,
                })
            })
            .join()
            .unwrap_or_else(|_| Err(setup(format!("the spawner for namespace {ns} panicked"))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_overlap() {
        let net = |s: &str, len| (s.parse::<Ipv4Addr>().unwrap(), len);
        assert!(overlaps(net("10.0.0.0", 8), net("10.200.3.0", 24)));
        assert!(overlaps(net("10.200.3.7", 32), net("10.200.3.0", 24)));
        assert!(!overlaps(net("10.200.4.0", 24), net("10.200.3.0", 24)));
        assert!(!overlaps(net("192.0.2.0", 24), net("10.200.3.0", 24)));
        assert!(overlaps(net("0.0.0.0", 0), net("10.200.3.0", 24)));
    }
}
