//! `lab up --netns`: etcd and each member on a host of its own — a network namespace with
//! its own address on a bridge of the lab — so a fault can cut the network between hosts.
//!
//! ```text
//!   host (pgpatrol, tests)  10.A.B.1 on bridge pgpb<id>
//!     ├─ veth ── netns pgp-<id>-etcd   10.A.B.2   etcd
//!     ├─ veth ── netns pgp-<id>-pg0    10.A.B.10  Patroni + PostgreSQL
//!     └─ veth ── netns pgp-<id>-pg1    10.A.B.11  ...
//! ```
//!
//! Everything is done with Debian's iproute2 (`ip`, `tc`). A partition is a pair of
//! blackhole routes per cut link (each side drops what it sends to the other), so TCP
//! connections across it stall as on a real cut and resume when the routes go. `dcs-slow`
//! caps the bandwidth of etcd's link with a token bucket (`tc qdisc … tbf`): etcd's answers
//! queue behind each other, as on a saturated link. Fixed latency and random loss need
//! `sch_netem` or a traffic classifier, which this machine's kernel does not have; `lab
//! break` says so instead of pretending. The host side (where pgpatrol runs) stays
//! reachable unless `--from host` cuts it too.
//!
//! Uses only `os` (the layering test holds it).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The lab's network: its bridge, its /24 and the faults made on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Net {
    /// Six hex digits naming the bridge, the namespaces and the veths.
    pub id: String,
    /// The /24's first three octets are those of `gateway` (`10.A.B.1`, the bridge's address
    /// on the host).
    pub gateway: Ipv4Addr,
    /// Every namespace made, also of members removed since, so `down` deletes them all.
    pub namespaces: Vec<String>,
    /// Routes a fault added (`lab repair` deletes them).
    #[serde(default)]
    pub cuts: Vec<Cut>,
    /// The bandwidth cap on etcd's link in kbit/s (`dcs-slow`), while it is on.
    #[serde(default)]
    pub dcs_kbit: Option<u32>,
}

/// One blackhole route: in namespace `ns` (`None`: the host), nothing reaches `to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cut {
    pub ns: Option<String>,
    pub to: Ipv4Addr,
}

/// A host of a `--netns` lab: its namespace and its address on the bridge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetHost {
    pub ns: String,
    pub addr: Ipv4Addr,
}

/// Where iproute2's tools are on Debian (root's PATH has /usr/sbin; a test's may not).
fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p.display().to_string();
        }
    }
    name.to_string()
}

/// Runs `ip ARGS` (or `tc`) and gives its stdout; an error names the command and what it
/// said.
fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool(prog))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!("cannot run {prog}: install iproute2 (scripts/setup installs it)")
        })?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The same, for cleanup: what is already gone is not an error.
fn run_quiet(prog: &str, args: &[&str]) {
    let _ = run(prog, args);
}

impl Net {
    /// A fresh id and a /24 in 10.64.0.0/10 that no interface or route of this machine uses.
    /// Needs root (namespaces and links are the kernel's).
    pub fn plan() -> Result<Net> {
        if !nix::unistd::geteuid().is_root() {
            bail!("lab up --netns needs root: network namespaces and links need CAP_NET_ADMIN; leave --netns out to run on loopback");
        }
        let used = format!(
            "{}\n{}",
            run("ip", &["-4", "-o", "addr", "show"])?,
            run("ip", &["-4", "route", "show", "table", "all"])?
        );
        for _ in 0..64 {
            let mut b = [0u8; 3];
            super::os::random_bytes(&mut b)?;
            let id = format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]);
            let gateway = Ipv4Addr::new(10, 64 + (b[0] & 0x3f), b[1], 1);
            let [a, bb, c, _] = gateway.octets();
            let prefix = format!("{a}.{bb}.{c}.");
            let bridge = format!("pgpb{id}");
            if used.contains(&prefix) || used.contains(&bridge) {
                continue;
            }
            return Ok(Net {
                id,
                gateway,
                namespaces: Vec::new(),
                cuts: Vec::new(),
                dcs_kbit: None,
            });
        }
        bail!("lab up --netns: found no free /24 in 10.64.0.0/10 for the lab's bridge")
    }

    pub fn bridge(&self) -> String {
        format!("pgpb{}", self.id)
    }

    /// `10.A.B.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b, c, _] = self.gateway.octets();
        format!("{a}.{b}.{c}.0/24")
    }

    /// The address of host number `n` (2 is etcd, 10 + i member i).
    fn addr(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.gateway.octets();
        Ipv4Addr::new(a, b, c, n)
    }

    /// The bridge, up, with the gateway address on the host.
    pub fn create_bridge(&self) -> Result<()> {
        let br = self.bridge();
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{}/24", self.gateway), "dev", &br],
        )?;
        run("ip", &["link", "set", &br, "up"])?;
        Ok(())
    }

    /// Etcd's host (`.2`), not made yet.
    pub fn etcd_host(&self) -> NetHost {
        self.host("etcd", 2)
    }

    /// Member `index`'s host (`.10 + index`), not made yet.
    pub fn member_host(&self, name: &str, index: usize) -> Result<NetHost> {
        let n = u8::try_from(10 + index)
            .ok()
            .filter(|n| *n < 255)
            .context("lab up --netns: at most 245 members fit the lab's /24")?;
        Ok(self.host(name, n))
    }

    fn host(&self, name: &str, n: u8) -> NetHost {
        NetHost {
            ns: format!("pgp-{}-{name}", self.id),
            addr: self.addr(n),
        }
    }

    /// The host-side end of `host`'s veth (interface names have at most 15 bytes).
    fn outer(&self, host: &NetHost) -> String {
        format!("pgpv{}{}", self.id, host.addr.octets()[3])
    }

    /// Makes `host`: its namespace with loopback up and `eth0` at its address, the veth's
    /// other end on the bridge. Recorded in `namespaces` before it is made, so a failure
    /// half-way is still cleaned up by `down`.
    pub fn create(&mut self, host: &NetHost) -> Result<()> {
        let ns = host.ns.as_str();
        let outer = self.outer(host);
        let inner = format!("pgpw{}{}", self.id, host.addr.octets()[3]);
        self.namespaces.push(ns.to_string());
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
        )?;
        run("ip", &["link", "set", &inner, "netns", ns])?;
        run("ip", &["-n", ns, "link", "set", &inner, "name", "eth0"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run("ip", &["link", "set", &outer, "master", &self.bridge()])?;
        run("ip", &["link", "set", &outer, "up"])?;
        Ok(())
    }

    /// Deletes every namespace (their veths go with them) and the bridge, and the host's
    /// blackhole routes. What is already gone is skipped.
    pub fn destroy(&self) {
        for cut in self.cuts.iter().filter(|c| c.ns.is_none()) {
            run_quiet(
                "ip",
                &["route", "del", "blackhole", &format!("{}/32", cut.to)],
            );
        }
        for ns in &self.namespaces {
            run_quiet("ip", &["netns", "del", ns]);
        }
        run_quiet("ip", &["link", "del", &self.bridge()]);
    }

    /// Cuts `a` from each of `others`: a blackhole route on both sides. `others` may name the
    /// host (`None` namespace, the gateway address).
    pub fn cut(&mut self, a: &NetHost, others: &[(Option<String>, Ipv4Addr)]) -> Result<()> {
        for (ns, addr) in others {
            self.route(Some(a.ns.clone()), *addr)?;
            self.route(ns.clone(), a.addr)?;
        }
        Ok(())
    }

    fn route(&mut self, ns: Option<String>, to: Ipv4Addr) -> Result<()> {
        let cut = Cut { ns, to };
        if self.cuts.contains(&cut) {
            return Ok(());
        }
        let dest = format!("{to}/32");
        match &cut.ns {
            Some(ns) => run("ip", &["-n", ns, "route", "add", "blackhole", &dest])?,
            None => run("ip", &["route", "add", "blackhole", &dest])?,
        };
        self.cuts.push(cut);
        Ok(())
    }

    /// Deletes every blackhole route a fault added.
    pub fn mend(&mut self) {
        for cut in std::mem::take(&mut self.cuts) {
            let dest = format!("{}/32", cut.to);
            match &cut.ns {
                Some(ns) => run_quiet("ip", &["-n", ns, "route", "del", "blackhole", &dest]),
                None => run_quiet("ip", &["route", "del", "blackhole", &dest]),
            }
        }
    }

    /// Caps etcd's link at `kbit` kbit/s both ways (a token bucket on each end of its veth).
    pub fn slow(&mut self, etcd: &NetHost, kbit: u32) -> Result<()> {
        self.unslow(etcd);
        let rate = format!("{kbit}kbit");
        let outer = self.outer(etcd);
        // A burst of one full-size packet and a queue of up to 10 s: etcd's answers wait
        // their turn, nothing is dropped for want of room.
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "1600", "latency", "10s",
        ];
        run(
            "tc",
            &[&["qdisc", "add", "dev", &outer][..], &tbf[..]].concat(),
        )?;
        self.dcs_kbit = Some(kbit);
        run(
            "tc",
            &[
                &["-n", &etcd.ns, "qdisc", "add", "dev", "eth0"][..],
                &tbf[..],
            ]
            .concat(),
        )?;
        Ok(())
    }

    /// Takes the cap off etcd's link.
    pub fn unslow(&mut self, etcd: &NetHost) {
        let outer = self.outer(etcd);
        run_quiet("tc", &["qdisc", "del", "dev", &outer, "root"]);
        run_quiet(
            "tc",
            &["-n", &etcd.ns, "qdisc", "del", "dev", "eth0", "root"],
        );
        self.dcs_kbit = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_limits_and_addresses_the_plan() {
        let net = Net {
            id: "a1b2c3".into(),
            gateway: Ipv4Addr::new(10, 77, 9, 1),
            namespaces: vec![],
            cuts: vec![],
            dcs_kbit: None,
        };
        assert_eq!(net.subnet(), "10.77.9.0/24");
        assert_eq!(net.addr(2), Ipv4Addr::new(10, 77, 9, 2));
        // IFNAMSIZ is 16 with the NUL: a veth of member 244 still fits.
        assert!(format!("pgpv{}{}", net.id, 254).len() <= 15);
        assert!(net.bridge().len() <= 15);
    }
}
