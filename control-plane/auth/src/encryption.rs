//! Encryption of stored values at rest: kube-apiserver's `--encryption-provider-config` file
//! (`EncryptionConfiguration`, `apiserver.config.k8s.io/v1`, validated as
//! `apiserver/pkg/apis/apiserver/validation` does) and the value transformers of
//! `apiserver/pkg/storage/value/encrypt` (`aesgcm`, `aescbc`, `secretbox`, `identity`), with
//! their wire formats, so that a value is stored exactly as kube-apiserver would store it.
//!
//! A stored value starts with the prefix of the provider and key that wrote it
//! (`k8s:enc:aesgcm:v1:<key name>:`); values without a prefix are plain text. Writes use the
//! first provider (and its first key); reads pick the provider and key by the prefix, and
//! report a value written by any other as stale, so that it is rewritten during key rotation.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use rand::RngCore;
use serde::Deserialize;

/// The start of every encrypted value, whatever its provider.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
pub const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";
pub const AESCBC_PREFIX: &str = "k8s:enc:aescbc:v1:";
pub const SECRETBOX_PREFIX: &str = "k8s:enc:secretbox:v1:";

const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";
/// What kube-apiserver read before 1.13; still accepted, as the same document.
const LEGACY_API_VERSION: &str = "v1";
const LEGACY_KIND: &str = "EncryptionConfig";

const AES_KEY_SIZES: &[usize] = &[16, 24, 32];
const SECRETBOX_KEY_SIZES: &[usize] = &[32];
const GCM_NONCE_SIZE: usize = 12;
const CBC_IV_SIZE: usize = 16;
const SECRETBOX_NONCE_SIZE: usize = 24;

/// Whether `value` is in an encrypted form (of any provider, configured or not).
pub fn is_encrypted(value: &[u8]) -> bool {
    value.starts_with(ENCRYPTED_PREFIX)
}

/// One problem of a configuration, at a field path as kube-apiserver names it
/// (`resources[0].providers[1].aesgcm.keys[0].secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the encryption configuration is empty")]
    Empty,
    #[error("decoding the encryption configuration: {0}")]
    Decode(String),
    #[error(
        "unsupported encryption configuration type {api_version}/{kind}: expected {API_VERSION} {KIND}"
    )]
    Type { api_version: String, kind: String },
    #[error("invalid encryption configuration: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a value could not be encrypted or decrypted. Permanent: retrying changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error(
        "the value is encrypted with {provider} key {key:?}, which the encryption configuration does not have"
    )]
    UnknownKey { provider: &'static str, key: String },
    #[error("{provider} key {key:?} cannot decrypt the value: {reason}")]
    Decrypt { provider: &'static str, key: String, reason: &'static str },
    #[error(
        "the value is encrypted ({prefix:?}) but no provider of the encryption configuration for it reads that form"
    )]
    NoProvider { prefix: String },
    #[error(
        "the value is stored as plain text but the encryption configuration for it has no identity provider to read it"
    )]
    PlainTextNotAllowed,
    #[error("{provider} key {key:?} failed to encrypt the value")]
    Encrypt { provider: &'static str, key: String },
}

// --- the file -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceFile>,
}

#[derive(Deserialize)]
struct ResourceFile {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderFile>,
}

#[derive(Deserialize)]
struct ProviderFile {
    aesgcm: Option<KeysFile>,
    aescbc: Option<KeysFile>,
    secretbox: Option<KeysFile>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyFile>,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

/// A group and resource as the configuration names them: `secrets` (core group),
/// `deployments.apps`, `*.apps` (every resource of a group), `*.` (of the core group), `*.*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupResource {
    group: String,
    resource: String,
}

impl GroupResource {
    /// As Kubernetes' `schema.ParseGroupResource`: the resource is what precedes the first dot.
    fn parse(text: &str) -> GroupResource {
        match text.split_once('.') {
            Some((resource, group)) => {
                GroupResource { group: group.to_string(), resource: resource.to_string() }
            }
            None => GroupResource { group: String::new(), resource: text.to_string() },
        }
    }

    fn any() -> GroupResource {
        GroupResource { group: "*".into(), resource: "*".into() }
    }

    fn any_in(group: &str) -> GroupResource {
        GroupResource { group: group.to_string(), resource: "*".into() }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() && self.resource != "*" {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

// --- ciphers --------------------------------------------------------------------------------

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

enum GcmCipher {
    A128(Box<aes_gcm::Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<aes_gcm::Aes256Gcm>),
}

enum BlockCipher {
    A128(Box<aes::Aes128>),
    A192(Box<aes::Aes192>),
    A256(Box<aes::Aes256>),
}

enum Cipher {
    AesGcm(GcmCipher),
    AesCbc(BlockCipher),
    Secretbox(Box<crypto_secretbox::XSalsa20Poly1305>),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

impl Cipher {
    /// `secret` has one of the provider's sizes (checked when the configuration was read).
    fn new(provider: ProviderKind, secret: &[u8]) -> Option<Cipher> {
        Some(match (provider, secret.len()) {
            (ProviderKind::AesGcm, 16) => {
                Cipher::AesGcm(GcmCipher::A128(Box::new(KeyInit::new_from_slice(secret).ok()?)))
            }
            (ProviderKind::AesGcm, 24) => {
                Cipher::AesGcm(GcmCipher::A192(Box::new(KeyInit::new_from_slice(secret).ok()?)))
            }
            (ProviderKind::AesGcm, 32) => {
                Cipher::AesGcm(GcmCipher::A256(Box::new(KeyInit::new_from_slice(secret).ok()?)))
            }
            (ProviderKind::AesCbc, 16) => Cipher::AesCbc(BlockCipher::A128(Box::new(
                aes::cipher::KeyInit::new_from_slice(secret).ok()?,
            ))),
            (ProviderKind::AesCbc, 24) => Cipher::AesCbc(BlockCipher::A192(Box::new(
                aes::cipher::KeyInit::new_from_slice(secret).ok()?,
            ))),
            (ProviderKind::AesCbc, 32) => Cipher::AesCbc(BlockCipher::A256(Box::new(
                aes::cipher::KeyInit::new_from_slice(secret).ok()?,
            ))),
            (ProviderKind::Secretbox, 32) => {
                Cipher::Secretbox(Box::new(KeyInit::new_from_slice(secret).ok()?))
            }
            _ => return None,
        })
    }

    /// `nonce/IV ‖ sealed data`, as upstream lays it out after the prefix. GCM authenticates
    /// `context` (the storage key) too, so a value copied under another key does not open.
    fn seal(&self, data: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        match self {
            Cipher::AesGcm(c) => {
                // Random 96-bit nonces, as upstream's aesgcm provider: safe for about 2^32
                // writes per key, which is why its documentation asks for regular rotation.
                let nonce = random::<GCM_NONCE_SIZE>();
                let payload = Payload { msg: data, aad: context };
                let n = aes_gcm::Nonce::from_slice(&nonce);
                let sealed = match c {
                    GcmCipher::A128(c) => c.encrypt(n, payload),
                    GcmCipher::A192(c) => c.encrypt(n, payload),
                    GcmCipher::A256(c) => c.encrypt(n, payload),
                }
                .ok()?;
                Some([&nonce[..], &sealed].concat())
            }
            Cipher::AesCbc(c) => {
                use aes::cipher::InnerIvInit;
                use cbc::cipher::BlockEncryptMut;
                use cbc::cipher::block_padding::Pkcs7;
                let iv = random::<CBC_IV_SIZE>();
                let iv_ga = aes::cipher::generic_array::GenericArray::from_slice(&iv);
                let sealed = match c {
                    BlockCipher::A128(k) => cbc::Encryptor::inner_iv_init((**k).clone(), iv_ga)
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                    BlockCipher::A192(k) => cbc::Encryptor::inner_iv_init((**k).clone(), iv_ga)
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                    BlockCipher::A256(k) => cbc::Encryptor::inner_iv_init((**k).clone(), iv_ga)
                        .encrypt_padded_vec_mut::<Pkcs7>(data),
                };
                Some([&iv[..], &sealed].concat())
            }
            Cipher::Secretbox(c) => {
                let nonce = random::<SECRETBOX_NONCE_SIZE>();
                // NaCl's layout (Poly1305 tag first), as Go's `secretbox.Seal` writes it.
                let sealed = c.encrypt(crypto_secretbox::Nonce::from_slice(&nonce), data).ok()?;
                Some([&nonce[..], &sealed].concat())
            }
        }
    }

    fn open(&self, data: &[u8], context: &[u8]) -> Result<Vec<u8>, &'static str> {
        match self {
            Cipher::AesGcm(c) => {
                if data.len() < GCM_NONCE_SIZE {
                    return Err("the stored data is shorter than a nonce");
                }
                let (nonce, sealed) = data.split_at(GCM_NONCE_SIZE);
                let n = aes_gcm::Nonce::from_slice(nonce);
                let payload = Payload { msg: sealed, aad: context };
                match c {
                    GcmCipher::A128(c) => c.decrypt(n, payload),
                    GcmCipher::A192(c) => c.decrypt(n, payload),
                    GcmCipher::A256(c) => c.decrypt(n, payload),
                }
                .map_err(|_| "authentication failed (wrong key, or the value was altered or moved)")
            }
            Cipher::AesCbc(c) => {
                use aes::cipher::InnerIvInit;
                use cbc::cipher::BlockDecryptMut;
                use cbc::cipher::block_padding::Pkcs7;
                if data.len() < CBC_IV_SIZE {
                    return Err("the stored data is shorter than the required size");
                }
                let (iv, sealed) = data.split_at(CBC_IV_SIZE);
                if sealed.is_empty() || sealed.len() % CBC_IV_SIZE != 0 {
                    return Err("the stored data is not a multiple of the block size");
                }
                let iv = aes::cipher::generic_array::GenericArray::from_slice(iv);
                match c {
                    BlockCipher::A128(k) => cbc::Decryptor::inner_iv_init((**k).clone(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                    BlockCipher::A192(k) => cbc::Decryptor::inner_iv_init((**k).clone(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                    BlockCipher::A256(k) => cbc::Decryptor::inner_iv_init((**k).clone(), iv)
                        .decrypt_padded_vec_mut::<Pkcs7>(sealed),
                }
                .map_err(|_| "invalid PKCS#7 padding (wrong key, or the value was altered)")
            }
            Cipher::Secretbox(c) => {
                if data.len() < SECRETBOX_NONCE_SIZE {
                    return Err("the stored data is shorter than a nonce");
                }
                let (nonce, sealed) = data.split_at(SECRETBOX_NONCE_SIZE);
                c.decrypt(crypto_secretbox::Nonce::from_slice(nonce), sealed)
                    .map_err(|_| "authentication failed (wrong key, or the value was altered)")
            }
        }
    }
}

// --- providers and transformers -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderKind {
    AesGcm,
    AesCbc,
    Secretbox,
}

impl ProviderKind {
    fn name(self) -> &'static str {
        match self {
            ProviderKind::AesGcm => "aesgcm",
            ProviderKind::AesCbc => "aescbc",
            ProviderKind::Secretbox => "secretbox",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            ProviderKind::AesGcm => AESGCM_PREFIX,
            ProviderKind::AesCbc => AESCBC_PREFIX,
            ProviderKind::Secretbox => SECRETBOX_PREFIX,
        }
    }
}

struct NamedKey {
    name: String,
    /// Provider prefix + name + `:`: what every value this key wrote starts with.
    prefix: Vec<u8>,
    cipher: Cipher,
}

enum Provider {
    Keyed { kind: ProviderKind, keys: Vec<NamedKey> },
    Identity,
}

impl Provider {
    fn describe(&self) -> String {
        match self {
            Provider::Identity => "identity".into(),
            Provider::Keyed { kind, keys } => {
                let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
                format!("{}[{}]", kind.name(), names.join(","))
            }
        }
    }
}

/// A value read through a [`Transformer`].
#[derive(Debug, PartialEq, Eq)]
pub struct Decrypted<'a> {
    pub value: Cow<'a, [u8]>,
    /// Written by a provider or key other than the first: a rewrite would store it anew
    /// (with the first), which is how keys are rotated.
    pub stale: bool,
}

/// The providers of one resource, in configuration order (kube-apiserver's
/// `prefixTransformers`). Thread-safe; every call is independent.
pub struct Transformer {
    /// Shared with the other resources of the same configuration entry.
    providers: Vec<Arc<Provider>>,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: Vec<String> = self.providers.iter().map(|p| p.describe()).collect();
        f.debug_struct("Transformer").field("providers", &providers).finish()
    }
}

impl Transformer {
    /// Whether writes are stored as they are (the first provider is `identity`).
    pub fn writes_plain_text(&self) -> bool {
        matches!(self.providers.first().map(|p| &**p), Some(Provider::Identity) | None)
    }

    /// What to store for `data` under the storage key `context`: sealed by the first
    /// provider's first key, or `data` itself when that provider is `identity`.
    pub fn encrypt<'a>(
        &self,
        data: &'a [u8],
        context: &[u8],
    ) -> Result<Cow<'a, [u8]>, TransformError> {
        match self.providers.first().map(|p| &**p) {
            Some(Provider::Keyed { kind, keys }) => {
                let Some(key) = keys.first() else {
                    return Err(TransformError::Encrypt {
                        provider: kind.name(),
                        key: String::new(),
                    });
                };
                let sealed = key.cipher.seal(data, context).ok_or_else(|| {
                    TransformError::Encrypt { provider: kind.name(), key: key.name.clone() }
                })?;
                let mut out = Vec::with_capacity(key.prefix.len() + sealed.len());
                out.extend_from_slice(&key.prefix);
                out.extend_from_slice(&sealed);
                Ok(Cow::Owned(out))
            }
            Some(Provider::Identity) | None => Ok(Cow::Borrowed(data)),
        }
    }

    /// The plain value of `data`, stored under the storage key `context`. The provider is
    /// picked by the value's prefix; plain text is read only when `identity` is one of the
    /// providers. Among several failures, the first is reported.
    pub fn decrypt<'a>(
        &self,
        data: &'a [u8],
        context: &[u8],
    ) -> Result<Decrypted<'a>, TransformError> {
        let mut first_error = None;
        for (i, provider) in self.providers.iter().enumerate() {
            match &**provider {
                Provider::Identity => {
                    // Identity reads only what is not encrypted; an encrypted value is for a
                    // later provider (upstream's migration away from encryption).
                    if is_encrypted(data) {
                        continue;
                    }
                    return Ok(Decrypted { value: Cow::Borrowed(data), stale: i != 0 });
                }
                Provider::Keyed { kind, keys } => {
                    let Some(rest) = data.strip_prefix(kind.prefix().as_bytes()) else {
                        continue;
                    };
                    let mut matched = false;
                    for (j, key) in keys.iter().enumerate() {
                        let Some(sealed) = data.strip_prefix(key.prefix.as_slice()) else {
                            continue;
                        };
                        matched = true;
                        match key.cipher.open(sealed, context) {
                            Ok(plain) => {
                                return Ok(Decrypted {
                                    value: Cow::Owned(plain),
                                    stale: i != 0 || j != 0,
                                });
                            }
                            Err(reason) => {
                                first_error.get_or_insert(TransformError::Decrypt {
                                    provider: kind.name(),
                                    key: key.name.clone(),
                                    reason,
                                });
                            }
                        }
                    }
                    if !matched {
                        first_error.get_or_insert(TransformError::UnknownKey {
                            provider: kind.name(),
                            key: key_name_of(rest),
                        });
                    }
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            if is_encrypted(data) {
                TransformError::NoProvider { prefix: provider_prefix_of(data) }
            } else {
                TransformError::PlainTextNotAllowed
            }
        }))
    }
}

/// The key name a value names after its provider prefix, for messages (printable, short).
fn key_name_of(rest: &[u8]) -> String {
    let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len()).min(64);
    printable(&rest[..end])
}

/// `k8s:enc:<provider>:<version>:` of an encrypted value, for messages.
fn provider_prefix_of(data: &[u8]) -> String {
    let mut colons = 0;
    let end = data
        .iter()
        .position(|&b| {
            colons += usize::from(b == b':');
            colons == 4
        })
        .map_or(data.len().min(40), |p| p + 1);
    printable(&data[..end])
}

fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

// --- the configuration ----------------------------------------------------------------------

/// A parsed and validated `EncryptionConfiguration`: which providers each resource uses.
pub struct EncryptionConfig {
    /// Per group-resource (possibly a wildcard), its providers in order; a resource named by
    /// several entries gets the providers of all of them, as upstream.
    transformers: HashMap<GroupResource, Arc<Transformer>>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m: Vec<(String, &Arc<Transformer>)> =
            self.transformers.iter().map(|(gr, t)| (gr.to_string(), t)).collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        f.debug_map().entries(m).finish()
    }
}

impl EncryptionConfig {
    /// Parse and validate a configuration file's text (YAML or JSON). Every problem found is
    /// reported, each with its field path.
    pub fn parse(text: &str) -> Result<EncryptionConfig, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Empty);
        }
        let file: ConfigFile =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let known = (file.api_version.as_str(), file.kind.as_str());
        if known != (API_VERSION, KIND) && known != (LEGACY_API_VERSION, LEGACY_KIND) {
            return Err(ConfigError::Type { api_version: file.api_version, kind: file.kind });
        }
        let mut errors = Vec::new();
        if file.resources.is_empty() {
            errors.push(FieldError {
                field: "resources".into(),
                message: "at least one resources is required".into(),
            });
        }
        let mut lists: Vec<(GroupResource, Vec<Arc<Provider>>)> = Vec::new();
        for (i, entry) in file.resources.iter().enumerate() {
            let r_path = format!("resources[{i}].resources");
            let p_path = format!("resources[{i}].providers");
            if entry.resources.is_empty() {
                errors.push(FieldError {
                    field: r_path.clone(),
                    message: format!("at least one {r_path} is required"),
                });
            }
            errors.extend(validate_resource_names(&entry.resources, &r_path));
            errors.extend(validate_overlap(&entry.resources, &r_path));
            if entry.providers.is_empty() {
                errors.push(FieldError {
                    field: p_path.clone(),
                    message: format!("at least one {p_path} is required"),
                });
            }
            let mut providers = Vec::new();
            for (j, p) in entry.providers.iter().enumerate() {
                match build_provider(p, &format!("{p_path}[{j}]")) {
                    Ok(provider) => providers.push(Arc::new(provider)),
                    Err(e) => errors.extend(e),
                }
            }
            if !errors.is_empty() {
                continue;
            }
            for res in &entry.resources {
                let gr = GroupResource::parse(res);
                // A rule after a wildcard that covers it would never apply: refused, as
                // upstream does.
                let mut masks = vec![GroupResource::any_in(&gr.group)];
                if gr.group != "*" {
                    masks.push(GroupResource::any());
                }
                for mask in masks {
                    if lists.iter().any(|(g, _)| *g == mask) {
                        errors.push(FieldError {
                            field: r_path.clone(),
                            message: format!(
                                "resource \"{gr}\" is masked by earlier rule \"{mask}\""
                            ),
                        });
                    }
                }
                match lists.iter_mut().find(|(g, _)| *g == gr) {
                    Some((_, list)) => list.extend(providers.iter().cloned()),
                    None => lists.push((gr, providers.clone())),
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let transformers = lists
            .into_iter()
            .map(|(gr, providers)| (gr, Arc::new(Transformer { providers })))
            .collect();
        Ok(EncryptionConfig { transformers })
    }

    /// The providers of resource `resource` of API group `group` (empty for core): an exact
    /// entry, else `*.<group>`, else `*.*`. `None` when the configuration does not name it:
    /// such a resource is stored as plain text (and an encrypted value of it is an error).
    pub fn transformer_for(&self, group: &str, resource: &str) -> Option<Arc<Transformer>> {
        let exact = GroupResource { group: group.to_string(), resource: resource.to_string() };
        [exact, GroupResource::any_in(group), GroupResource::any()]
            .iter()
            .find_map(|gr| self.transformers.get(gr).cloned())
    }

    /// The configuration of a new cluster: Secrets sealed with AES-GCM under one fresh random
    /// 256-bit key (`key1`), `identity` after it so Secrets stored before it was in use still
    /// read.
    pub fn generate_default() -> String {
        let secret = base64::engine::general_purpose::STANDARD.encode(random::<32>());
        format!(
            "apiVersion: {API_VERSION}\n\
             kind: {KIND}\n\
             resources:\n  \
               - resources:\n      \
                   - secrets\n    \
                 providers:\n      \
                   - aesgcm:\n          \
                       keys:\n            \
                         - name: key1\n              \
                           secret: {secret}\n      \
                   - identity: {{}}\n"
        )
    }

    /// A configuration that stores Secrets as plain text: what a member uses when it joins a
    /// cluster whose members keep no encryption configuration of their own.
    pub fn plain_text() -> String {
        format!(
            "apiVersion: {API_VERSION}\n\
             kind: {KIND}\n\
             resources:\n  \
               - resources:\n      \
                   - secrets\n    \
                 providers:\n      \
                   - identity: {{}}\n"
        )
    }
}

fn build_provider(p: &ProviderFile, path: &str) -> Result<Provider, Vec<FieldError>> {
    let found = [p.aesgcm.is_some(), p.aescbc.is_some(), p.secretbox.is_some()]
        .into_iter()
        .chain([p.identity.is_some(), p.kms.is_some()])
        .filter(|&b| b)
        .count();
    let err = |field: String, message: String| vec![FieldError { field, message }];
    if found == 0 {
        return Err(err(
            path.to_string(),
            "provider does not contain any of the expected providers: aesgcm, aescbc, secretbox, identity".into(),
        ));
    }
    if found > 1 {
        return Err(err(
            path.to_string(),
            "more than one provider specified in a single element, should split into different list elements".into(),
        ));
    }
    if p.kms.is_some() {
        return Err(err(
            format!("{path}.kms"),
            "kms providers are not supported by Skiff; use aesgcm, aescbc or secretbox".into(),
        ));
    }
    if p.identity.is_some() {
        return Ok(Provider::Identity);
    }
    let (kind, keys, sizes) = match (&p.aesgcm, &p.aescbc, &p.secretbox) {
        (Some(k), _, _) => (ProviderKind::AesGcm, k, AES_KEY_SIZES),
        (_, Some(k), _) => (ProviderKind::AesCbc, k, AES_KEY_SIZES),
        (_, _, Some(k)) => (ProviderKind::Secretbox, k, SECRETBOX_KEY_SIZES),
        _ => return Err(err(path.to_string(), "no provider".into())),
    };
    let keys_path = format!("{path}.{}.keys", kind.name());
    if keys.keys.is_empty() {
        return Err(err(keys_path, "at least one keys is required".into()));
    }
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    let mut built = Vec::new();
    for (i, key) in keys.keys.iter().enumerate() {
        let key_path = format!("{keys_path}[{i}]");
        if key.name.is_empty() {
            errors.push(FieldError {
                field: format!("{key_path}.name"),
                message: "name is a mandatory field for a key".into(),
            });
        } else if !names.insert(key.name.as_str()) {
            // Two keys of one name would make the stored prefix ambiguous.
            errors.push(FieldError {
                field: format!("{key_path}.name"),
                message: format!("duplicate key name {:?}: key names must be unique", key.name),
            });
        }
        if key.secret.is_empty() {
            errors.push(FieldError {
                field: format!("{key_path}.secret"),
                message: "secret is a mandatory field for a key".into(),
            });
            continue;
        }
        // The secret is never echoed: the message says "REDACTED" where upstream does.
        let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(key.secret.trim()) else {
            errors.push(FieldError {
                field: format!("{key_path}.secret"),
                message: "Invalid value: \"REDACTED\": secrets must be base64 encoded".into(),
            });
            continue;
        };
        if !sizes.contains(&secret.len()) {
            errors.push(FieldError {
                field: format!("{key_path}.secret"),
                message: format!(
                    "Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {sizes:?}",
                    secret.len()
                ),
            });
            continue;
        }
        let Some(cipher) = Cipher::new(kind, &secret) else {
            errors.push(FieldError {
                field: format!("{key_path}.secret"),
                message: "the key cannot be used".into(),
            });
            continue;
        };
        built.push(NamedKey {
            name: key.name.clone(),
            prefix: format!("{}{}:", kind.prefix(), key.name).into_bytes(),
            cipher,
        });
    }
    if errors.is_empty() { Ok(Provider::Keyed { kind, keys: built }) } else { Err(errors) }
}

fn validate_resource_names(resources: &[String], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (j, res) in resources.iter().enumerate() {
        let gr = GroupResource::parse(res);
        let message = if res.to_lowercase() != *res {
            "resource name should not contain capital letters"
        } else if res == "*" {
            "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"
        } else if ["apiserveripinfo", "serviceipallocations", "servicenodeportallocations"]
            .contains(&res.as_str())
        {
            "resources which do not have REST API/s cannot be encrypted"
        } else if gr.group == "events.k8s.io" {
            "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file"
        } else if gr.group == "extensions" {
            "'extensions' group has been removed and cannot be used for encryption"
        } else if gr.group == "*" && gr.resource != "*" {
            "encrypting the same resource across groups is not supported"
        } else {
            continue;
        };
        errors.push(FieldError {
            field: format!("{path}[{j}]"),
            message: format!("Invalid value: {res:?}: {message}"),
        });
    }
    errors
}

fn validate_overlap(resources: &[String], path: &str) -> Vec<FieldError> {
    let parsed: Vec<GroupResource> = resources.iter().map(|r| GroupResource::parse(r)).collect();
    let (mut duplicate, mut overlap) = (false, false);
    for (i, a) in parsed.iter().enumerate() {
        for (j, b) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            if a == b {
                duplicate = true;
            } else if *a == GroupResource::any()
                || (a.group == b.group && (a.resource == "*" || b.resource == "*"))
            {
                overlap = true;
            }
        }
    }
    let mut errors = Vec::new();
    if duplicate {
        errors.push(FieldError {
            field: path.to_string(),
            message: format!(
                "Invalid value: {resources:?}: the same resource cannot be specified multiple times"
            ),
        });
    }
    if overlap {
        errors.push(FieldError {
            field: path.to_string(),
            message: format!(
                "Invalid value: {resources:?}: using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked"
            ),
        });
    }
    errors
}

#[cfg(test)]
mod tests;
