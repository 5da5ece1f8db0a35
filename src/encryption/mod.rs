//! Encryption at rest with age (the `age` crate): X25519 keys, the payload in age's STREAM
//! format of 64 KiB chunks, each authenticated, so a byte range is served by decrypting only
//! the chunks it touches. Once final, a recording is sealed in place on disk (and so reaches
//! the archive's bucket sealed); the library keeps describing its plaintext (format, length,
//! SHA-256), so playback, ranges, transcoding, waveforms and call assembly give the same bytes
//! with and without encryption.
//!
//! Keys: `ENCRYPTION_KEYS` lists age identities (`AGE-SECRET-KEY-1...`); the first seals new
//! files, all open old ones; `ari-recorder reencrypt` moves files to the first.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

/// How every age file begins.
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";

struct Key {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
}

/// The keys a deployment seals and opens recordings with; the first seals.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    // Only the public halves: a secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.recipient.to_string()))
            .finish()
    }
}

impl Keyring {
    /// Parses age X25519 identities, newest (the one that seals) first.
    pub fn parse(secrets: &[String]) -> Result<Keyring, String> {
        if secrets.is_empty() {
            return Err("no key".into());
        }
        let mut keys = Vec::new();
        for (n, secret) in secrets.iter().enumerate() {
            let identity = age::x25519::Identity::from_str(secret.trim()).map_err(|e| {
                format!(
                    "key {} is not an age identity (AGE-SECRET-KEY-1...): {e}",
                    n + 1
                )
            })?;
            let recipient = identity.to_public();
            keys.push(Key {
                identity,
                recipient,
            });
        }
        Ok(Keyring { keys })
    }

    /// A key that lives as long as the process: for caches that need not outlive it.
    pub fn ephemeral() -> Keyring {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        Keyring {
            keys: vec![Key {
                identity,
                recipient,
            }],
        }
    }

    /// A new identity for `ENCRYPTION_KEYS`, and its public half.
    pub fn generate() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        (
            identity.to_string().expose_secret().to_string(),
            identity.to_public().to_string(),
        )
    }

    /// The public half of the sealing key: names it in logs and the database.
    pub fn current_id(&self) -> String {
        self.keys[0].recipient.to_string()
    }

    /// Seals everything `plain` holds into `out` with the current key; bytes of plaintext.
    pub fn seal(&self, plain: &mut impl Read, out: impl Write) -> io::Result<u64> {
        let recipient = &self.keys[0].recipient as &dyn age::Recipient;
        let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient))
            .map_err(io::Error::other)?;
        let mut writer = encryptor.wrap_output(out)?;
        let copied = io::copy(plain, &mut writer)?;
        writer.finish()?.flush()?;
        Ok(copied)
    }

    /// `plain` sealed with the current key, as one age file in memory (a transcript, a talk
    /// timeline: small values kept in the database).
    pub fn seal_bytes(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plain.len() + 256);
        self.seal(&mut &plain[..], &mut out)?;
        Ok(out)
    }

    /// The plaintext of an age file held in memory, opened with any of the keys.
    pub fn open_bytes(&self, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut plain = Vec::new();
        self.open(io::Cursor::new(sealed))?
            .read_to_end(&mut plain)?;
        Ok(plain)
    }

    /// A 32-byte key for `purpose` drawn from each identity (HMAC-SHA256 keyed by the secret),
    /// the current key's first, each with its key's public half: what a keyed index of sealed
    /// data is built with, so rotating the keys rotates it too.
    pub fn derived_keys(&self, purpose: &str) -> Vec<(String, [u8; 32])> {
        use hmac::Mac;
        self.keys
            .iter()
            .filter_map(|key| {
                let secret = key.identity.to_string();
                // HMAC takes a key of any length: this never fails.
                let mut mac =
                    crate::signing::HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
                        .ok()?;
                mac.update(purpose.as_bytes());
                Some((
                    key.recipient.to_string(),
                    mac.finalize().into_bytes().into(),
                ))
            })
            .collect()
    }

    /// Seals `path` in place: written beside it, flushed to disk, renamed over it, its
    /// modification time kept (the library dates files without call metadata by it). The new
    /// size on disk.
    pub fn seal_file(&self, path: &Path) -> io::Result<u64> {
        let mut plain = std::fs::File::open(path)?;
        let modified = plain.metadata()?.modified().ok();
        replace_file(path, "sealing", modified, |out| {
            self.seal(&mut plain, out).map(|_| ())
        })
    }

    /// The plaintext of an age file read through `inner`, seekable.
    pub fn open<R: Read + Seek>(&self, inner: R) -> io::Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(inner).map_err(invalid)?;
        decryptor
            .decrypt(self.keys.iter().map(|k| &k.identity as &dyn age::Identity))
            .map_err(invalid)
    }

    /// Which of the keys sealed the age file at `path` (its public half); None: none of them.
    pub fn key_of_file(&self, path: &Path) -> io::Result<Option<String>> {
        for key in &self.keys {
            let decryptor = age::Decryptor::new(std::fs::File::open(path)?).map_err(invalid)?;
            if decryptor
                .decrypt(std::iter::once(&key.identity as &dyn age::Identity))
                .is_ok()
            {
                return Ok(Some(key.recipient.to_string()));
            }
        }
        Ok(None)
    }

    /// Seals `path` again with the current key, in place, its plaintext never on disk; the new
    /// size on disk.
    pub fn reseal_file(&self, path: &Path) -> io::Result<u64> {
        let source = std::fs::File::open(path)?;
        let modified = source.metadata()?.modified().ok();
        let mut plain = self.open(source)?;
        replace_file(path, "resealing", modified, |out| {
            self.seal(&mut plain, out).map(|_| ())
        })
    }
}

/// Writes `path` anew through `write` beside it (`what` names the temporary file), flushes it
/// to disk, keeps `modified`, and renames it over the old one; the new size. Nothing is left
/// behind on failure.
fn replace_file(
    path: &Path,
    what: &str,
    modified: Option<std::time::SystemTime>,
    write: impl FnOnce(&mut io::BufWriter<&mut std::fs::File>) -> io::Result<()>,
) -> io::Result<u64> {
    let temporary = sibling(path, what);
    let result = (|| {
        let mut out = std::fs::File::create(&temporary)?;
        let mut buffered = io::BufWriter::with_capacity(1 << 16, &mut out);
        write(&mut buffered)?;
        buffered.flush()?;
        drop(buffered);
        out.sync_all()?;
        if let Some(modified) = modified {
            out.set_modified(modified)?;
        }
        std::fs::rename(&temporary, path)?;
        std::fs::metadata(path).map(|m| m.len())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("age: {e}"))
}

/// `dir/.name.<what>-<random>`: hidden, and with no recording extension, so the indexer never
/// takes it for a recording.
pub fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{:08x}", fastrand::u32(..)))
}

/// Whether the bytes read through `inner` begin as an age file.
pub fn is_sealed(mut inner: impl Read) -> io::Result<bool> {
    let mut head = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match inner.read(&mut head[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(head == MAGIC)
}

/// Whether the file at `path` is sealed.
pub fn is_sealed_file(path: &Path) -> io::Result<bool> {
    is_sealed(std::fs::File::open(path)?)
}

/// The plaintext length of an opened age stream.
pub fn plain_len<R: Read + Seek>(reader: &mut age::stream::StreamReader<R>) -> io::Result<u64> {
    let len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (Keyring, String) {
        let (secret, _) = Keyring::generate();
        (
            Keyring::parse(std::slice::from_ref(&secret)).expect("key"),
            secret,
        )
    }

    #[test]
    fn any_range_of_a_sealed_file_decrypts_to_the_same_bytes() {
        let (keys, _) = ring();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut sealed = Vec::new();
        keys.seal(&mut plain.as_slice(), &mut sealed).expect("seal");
        assert!(is_sealed(sealed.as_slice()).expect("read"));
        assert!(!sealed.windows(64).any(|w| w == &plain[1000..1064]));
        let mut reader = keys.open(io::Cursor::new(&sealed)).expect("open");
        assert_eq!(plain_len(&mut reader).expect("len"), plain.len() as u64);
        for (start, len) in [(0, 10), (65_530, 20), (131_072, 70_000), (299_990, 10)] {
            reader.seek(SeekFrom::Start(start)).expect("seek");
            let mut got = vec![0u8; len];
            reader.read_exact(&mut got).expect("read");
            assert_eq!(got, plain[start as usize..start as usize + len]);
        }
    }

    #[test]
    fn old_keys_open_and_only_the_first_seals() {
        let (old, old_secret) = ring();
        let (new_secret, _) = Keyring::generate();
        let mut sealed = Vec::new();
        old.seal(&mut &b"voicemail"[..], &mut sealed).expect("seal");
        let rotated = Keyring::parse(&[new_secret.clone(), old_secret]).expect("keys");
        let mut out = String::new();
        rotated
            .open(io::Cursor::new(&sealed))
            .expect("an old key opens")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "voicemail");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("vm.ulaw");
        std::fs::write(&path, &sealed).expect("write");
        assert_eq!(
            rotated.key_of_file(&path).expect("header"),
            Some(old.current_id())
        );
        rotated.reseal_file(&path).expect("reseal");
        assert_eq!(
            rotated.key_of_file(&path).expect("header"),
            Some(rotated.current_id())
        );
        let only_new = Keyring::parse(&[new_secret]).expect("key");
        assert!(only_new.open(io::Cursor::new(&sealed)).is_err());
        assert!(!format!("{rotated:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn small_values_seal_in_memory_and_derived_keys_follow_the_keys() {
        let (keys, secret) = ring();
        let sealed = keys.seal_bytes(b"card ending 4242").expect("seal");
        assert!(is_sealed(sealed.as_slice()).expect("read"));
        assert!(!sealed.windows(4).any(|w| w == b"4242"));
        assert_eq!(keys.open_bytes(&sealed).expect("open"), b"card ending 4242");
        let (other, _) = ring();
        assert!(other.open_bytes(&sealed).is_err());
        let derived = keys.derived_keys("words");
        assert_eq!(derived.len(), 1);
        assert_eq!(derived[0].0, keys.current_id());
        assert_ne!(derived[0].1, keys.derived_keys("other")[0].1);
        assert_ne!(derived[0].1, other.derived_keys("words")[0].1);
        let again = Keyring::parse(&[secret]).expect("key");
        assert_eq!(again.derived_keys("words"), derived);
    }

    #[test]
    fn sealing_a_file_in_place_keeps_its_modification_time() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.wav");
        std::fs::write(&path, b"RIFF....WAVE").expect("write");
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(then))
            .expect("mtime");
        let (keys, _) = ring();
        keys.seal_file(&path).expect("seal");
        assert!(is_sealed_file(&path).expect("read"));
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let diff = modified
            .duration_since(then)
            .unwrap_or_else(|e| e.duration());
        assert!(diff < std::time::Duration::from_secs(1));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
