//! Certificates for a throwaway cluster, generated at start.
//!
//! Two separate CAs, as kubeadm does: the cluster CA signs the apiserver's
//! serving certificate and every client certificate; the front-proxy CA signs
//! only the aggregator's client certificate, so an extension API server that
//! trusts the front-proxy CA for `X-Remote-User` headers cannot be fooled by an
//! ordinary cluster client certificate (the aggregation docs warn against
//! reusing the client CA).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Paths of the PEM files written for the control plane.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub front_proxy_ca_cert: PathBuf,
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// Everything the harness generates at start.
pub struct Pki {
    pub ca: Pem,
    pub admin: Pem,
    pub scheduler: Pem,
    pub front_proxy_ca: Pem,
    /// A client certificate signed by the front-proxy CA; tests use it to call
    /// extension servers as the aggregator would.
    pub front_proxy_client: Pem,
    pub files: PkiFiles,
    ca_issuer: Issuer<'static, KeyPair>,
}

/// The CN the apiserver's proxy client certificate carries (kubeadm's name);
/// it is the only name in `--requestheader-allowed-names`.
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

fn new_ca(common_name: &str) -> Result<(Pem, Issuer<'static, KeyPair>), Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    Ok((pem, Issuer::new(params, key)))
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
    sans: &[SanType],
) -> Result<Pem, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, organization);
    params.subject_alt_names = sans.to_vec();
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl Pki {
    /// Generates every certificate and writes the files the apiserver reads
    /// into `dir`.
    pub fn generate(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)?;
        let (ca, ca_issuer) = new_ca("headroom-lab-ca")?;
        let (front_proxy_ca, fp_issuer) = new_ca("headroom-lab-front-proxy-ca")?;
        let localhost_sans = [
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes".try_into()?),
            SanType::DnsName("kubernetes.default".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
            SanType::IpAddress([10, 96, 0, 1].into()),
        ];
        let apiserver = leaf(
            &ca_issuer,
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
            &localhost_sans,
        )?;
        let admin = leaf(
            &ca_issuer,
            "headroom-lab-admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
            &[],
        )?;
        // The scheduler gets its own bootstrap identity, as on kubeadm, so a
        // missing RBAC rule shows up here and not first on a user's cluster.
        let scheduler = leaf(
            &ca_issuer,
            "system:kube-scheduler",
            None,
            ExtendedKeyUsagePurpose::ClientAuth,
            &[],
        )?;
        let front_proxy_client = leaf(
            &fp_issuer,
            FRONT_PROXY_CLIENT_CN,
            None,
            ExtendedKeyUsagePurpose::ClientAuth,
            &[],
        )?;
        // The service-account signing key (ECDSA P-256, PKCS#8) and its
        // public half for token verification.
        let sa = KeyPair::generate()?;
        let (sa_key, sa_pub) = (sa.serialize_pem(), sa.public_key_pem());

        let write = |file: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = dir.join(file);
            std::fs::write(&path, contents)?;
            Ok(path)
        };
        let files = PkiFiles {
            ca_cert: write("ca.crt", &ca.cert)?,
            apiserver_cert: write("apiserver.crt", &apiserver.cert)?,
            apiserver_key: write("apiserver.key", &apiserver.key)?,
            front_proxy_ca_cert: write("front-proxy-ca.crt", &front_proxy_ca.cert)?,
            front_proxy_client_cert: write("front-proxy-client.crt", &front_proxy_client.cert)?,
            front_proxy_client_key: write("front-proxy-client.key", &front_proxy_client.key)?,
            service_account_key: write("sa.key", &sa_key)?,
            service_account_pub: write("sa.pub", &sa_pub)?,
        };
        Ok(Self {
            ca,
            admin,
            scheduler,
            front_proxy_ca,
            front_proxy_client,
            files,
            ca_issuer,
        })
    }

    /// A client certificate from the cluster CA for `user` in `groups`
    /// (x509 authentication: CN is the user name, O the groups).
    pub fn client_cert(&self, user: &str, group: Option<&str>) -> Result<Pem, Error> {
        leaf(
            &self.ca_issuer,
            user,
            group,
            ExtendedKeyUsagePurpose::ClientAuth,
            &[],
        )
    }
}
