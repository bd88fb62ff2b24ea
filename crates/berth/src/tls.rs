//! `berth tls init`: a local certificate authority and a server certificate signed by
//! it, so clients trust berth's HTTPS by installing one file (`ca.crt`) instead of
//! marking the registry insecure.
//!
//! Run again, it keeps the CA (clients that trust it keep trusting) and issues a new
//! server certificate for the names given; a running `berth serve` picks it up on its
//! next connection.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Create a local CA and a server certificate for the given names (ca.crt,
    /// server.crt, server.key), and print how to serve and trust them.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// A DNS name or IP address clients use to reach berth (repeatable).
    #[arg(long = "host", value_name = "NAME", required = true)]
    hosts: Vec<String>,
    /// Where to write the files [default: <data-dir>/tls]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The data directory `berth serve` uses (for the default --dir)
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
    data_dir: PathBuf,
    /// The port clients use, for the trust instructions printed.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Days the server certificate is valid (browsers accept at most 398).
    #[arg(long, default_value_t = 397)]
    days: u32,
}

/// Days the CA is valid: long, since every client installs it.
const CA_DAYS: i64 = 3650;

pub fn tls(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| args.data_dir.join("tls"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (issuer, reused) = if ca_cert.exists() && ca_key.exists() {
        let cert = read(&ca_cert)?;
        let key = KeyPair::from_pem(&read(&ca_key)?)
            .with_context(|| format!("reading {}", ca_key.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key)
            .with_context(|| format!("reading {}", ca_cert.display()))?;
        (issuer, true)
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "berth local CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        write(&ca_cert, &cert.pem())?;
        (Issuer::new(params, key), false)
    };

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, args.hosts[0].as_str());
    for host in &args.hosts {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .with_context(|| format!("{host:?} is not a DNS name or IP address"))?,
            ),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(args.days));
    let cert = params.signed_by(&key, &issuer)?;
    // The key first: a server reloading between the two writes sees a pair that does
    // not match, keeps its previous one, and loads this pair when the certificate lands.
    let (server_cert, server_key) = (dir.join("server.crt"), dir.join("server.key"));
    write_private(&server_key, &key.serialize_pem())?;
    write(&server_cert, &cert.pem())?;

    print_steps(&dir, &args.hosts, args.port, reused);
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    write_mode(path, text, 0o644)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    write_mode(path, text, 0o600)
}

fn write_mode(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let staged = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&staged)
        .with_context(|| format!("writing {}", staged.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&staged, path).with_context(|| format!("writing {}", path.display()))
}

fn print_steps(dir: &Path, hosts: &[String], port: u16, reused: bool) {
    let dir = dir.display();
    println!(
        "{} {dir}/ca.crt, and a server certificate for {} in {dir}/server.crt and {dir}/server.key.",
        if reused {
            "Kept the CA in"
        } else {
            "Created a CA in"
        },
        hosts.join(", ")
    );
    println!();
    println!("Serve HTTPS (a running server picks up a new certificate by itself):");
    println!("  berth serve --tls-cert {dir}/server.crt --tls-key {dir}/server.key");
    println!();
    println!("Trust the CA on each client machine (no insecure-registries needed):");
    for host in hosts {
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => host.clone(),
        };
        println!("  # Docker engine, for {host}:{port}");
        println!("  sudo mkdir -p '/etc/docker/certs.d/{host}:{port}'");
        println!("  sudo cp {dir}/ca.crt '/etc/docker/certs.d/{host}:{port}/ca.crt'");
        println!("  # podman, skopeo, buildah (containers/image), for {host}:{port}");
        println!("  sudo mkdir -p '/etc/containers/certs.d/{host}:{port}'");
        println!("  sudo cp {dir}/ca.crt '/etc/containers/certs.d/{host}:{port}/ca.crt'");
    }
    println!("  # or per command: skopeo … --cert-dir DIR, DIR holding a copy of ca.crt alone");
    println!("  # the system store (curl, browsers, containerd), Debian and Ubuntu:");
    println!("  sudo cp {dir}/ca.crt /usr/local/share/ca-certificates/berth-ca.crt");
    println!("  sudo update-ca-certificates");
    println!(
        "  # Fedora, RHEL: sudo cp {dir}/ca.crt /etc/pki/ca-trust/source/anchors/berth-ca.crt && sudo update-ca-trust"
    );
}
