//! Writing and removing objects: a file sent whole, as a multipart upload, or as ordered parts
//! plus a manifest, then read back and checked; deletes that count an object already gone as
//! deleted. Shared by the upload queue and the whole-call copies.

use std::path::Path;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::queue;
use super::{Archive, ArchiveError};

/// Files up to this size go up in one request; larger ones as a multipart upload of such parts.
const MULTIPART_CHUNK: usize = 8 << 20;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 2;

/// The manifest of a recording stored as parts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    size: u64,
    sha256: String,
    part_bytes: u64,
    parts: Vec<ManifestPart>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ManifestPart {
    key: String,
    size: u64,
    sha256: String,
}

impl Archive {
    /// Uploads `file` (`size` bytes) as `key`, as parts plus a manifest past `split` bytes (0:
    /// whole), and reads every object back; what is stored and the SHA-256 of what went up.
    pub async fn store_file(
        &self,
        key: &str,
        file: &Path,
        (size, split): (u64, u64),
        attributes: Attributes,
        sealed: bool,
    ) -> Result<(queue::StoredObject, String), ArchiveError> {
        let (parts, part_bytes) = if split > 0 && size > split {
            (size.div_ceil(split), split)
        } else {
            (0, 0)
        };
        let mut sent = Sha256::new();
        let mut manifest_parts = Vec::new();
        if parts == 0 {
            self.put_region(key, file, 0, size, attributes, &mut sent)
                .await?;
        } else {
            for part in 0..parts {
                let start = part * part_bytes;
                let len = part_bytes.min(size - start);
                let part_key = Archive::part_key(key, part);
                let part_sha = self
                    .put_region(&part_key, file, start, len, Attributes::new(), &mut sent)
                    .await?;
                manifest_parts.push(ManifestPart {
                    key: part_key,
                    size: len,
                    sha256: part_sha,
                });
            }
        }
        let sent = hex::encode(sent.finalize());
        let read_back = self.verify(key, parts, &manifest_parts, size).await?;
        if read_back != sent {
            return Err(ArchiveError::Mismatch(format!(
                "SHA-256 read back {read_back}, sent {sent}"
            )));
        }
        if parts > 0 {
            let manifest = Manifest {
                size,
                sha256: sent.clone(),
                part_bytes,
                parts: manifest_parts,
            };
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| ArchiveError::Mismatch(e.to_string()))?;
            self.store()
                .put(
                    &ObjectPath::from(Archive::manifest_key(key)),
                    PutPayload::from(body),
                )
                .await?;
        }
        let object = queue::StoredObject {
            key: key.to_string(),
            parts,
            part_bytes,
            size,
            sealed,
        };
        Ok((object, sent))
    }

    /// Sends bytes `start..start + len` of `file` as object `key`, feeding them to `whole` as
    /// well; the SHA-256 of what was sent.
    async fn put_region(
        &self,
        key: &str,
        file: &Path,
        start: u64,
        len: u64,
        attributes: Attributes,
        whole: &mut Sha256,
    ) -> Result<String, ArchiveError> {
        let mut source = tokio::fs::File::open(file).await?;
        source.seek(std::io::SeekFrom::Start(start)).await?;
        let mut source = source.take(len);
        let path = ObjectPath::from(key);
        let store = self.store();
        let mut hash = Sha256::new();
        let mut sent = 0u64;
        if len <= MULTIPART_CHUNK as u64 {
            let mut body = Vec::with_capacity(len as usize);
            source.read_to_end(&mut body).await?;
            hash.update(&body);
            whole.update(&body);
            sent = body.len() as u64;
            check_len(sent, len, key)?;
            store
                .put_opts(
                    &path,
                    PutPayload::from(body),
                    PutOptions {
                        attributes,
                        ..PutOptions::default()
                    },
                )
                .await?;
        } else {
            let upload = store
                .put_multipart_opts(
                    &path,
                    PutMultipartOptions {
                        attributes,
                        ..PutMultipartOptions::default()
                    },
                )
                .await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match source.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(e.into());
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
                hash.update(&buf[..n]);
                whole.update(&buf[..n]);
                writer.write(&buf[..n]);
                sent += n as u64;
            }
            if let Err(e) = check_len(sent, len, key) {
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.finish().await?;
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// Reads every object back: sizes as sent, and the SHA-256 of the whole as read.
    async fn verify(
        &self,
        key: &str,
        parts: u64,
        manifest: &[ManifestPart],
        size: u64,
    ) -> Result<String, ArchiveError> {
        let store = self.store();
        let objects: Vec<(String, u64, Option<&str>)> = if parts == 0 {
            vec![(key.to_string(), size, None)]
        } else {
            manifest
                .iter()
                .map(|p| (p.key.clone(), p.size, Some(p.sha256.as_str())))
                .collect()
        };
        let mut whole = Sha256::new();
        for (object, expected, part_sha) in objects {
            let path = ObjectPath::from(object.as_str());
            let meta = store.head(&path).await?;
            if meta.size != expected {
                return Err(ArchiveError::Mismatch(format!(
                    "{object}: the bucket holds {} bytes, {expected} were sent",
                    meta.size
                )));
            }
            let mut stream = store.get(&path).await?.into_stream();
            let mut part = Sha256::new();
            let mut read = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                read += chunk.len() as u64;
                part.update(&chunk);
                whole.update(&chunk);
            }
            if read != expected {
                return Err(ArchiveError::Mismatch(format!(
                    "{object}: read back {read} bytes of {expected}"
                )));
            }
            if let Some(sha) = part_sha {
                let got = hex::encode(part.finalize());
                if got != sha {
                    return Err(ArchiveError::Mismatch(format!(
                        "{object}: SHA-256 read back {got}, sent {sha}"
                    )));
                }
            }
        }
        Ok(hex::encode(whole.finalize()))
    }

    pub async fn delete_keys(&self, key: &str, parts: u64) -> Result<(), ArchiveError> {
        self.delete_objects(object_keys(key, parts)).await
    }

    /// Deletes each object; one already gone counts as deleted.
    pub async fn delete_objects(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), ArchiveError> {
        for key in keys {
            match self.store().delete(&ObjectPath::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Every object a recording stored as `key` (in `parts`, 0: whole) is made of.
pub fn object_keys(key: &str, parts: u64) -> Vec<String> {
    if parts == 0 {
        return vec![key.to_string()];
    }
    let mut keys: Vec<String> = (0..parts).map(|p| Archive::part_key(key, p)).collect();
    keys.push(Archive::manifest_key(key));
    keys
}

fn check_len(sent: u64, len: u64, key: &str) -> Result<(), ArchiveError> {
    if sent == len {
        Ok(())
    } else {
        Err(ArchiveError::Mismatch(format!(
            "{key}: the file ended after {sent} of {len} bytes"
        )))
    }
}

/// What a browser fetching the object itself (a presigned link) should be told.
pub fn attributes_for(rel: &str) -> Attributes {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let content_type = match name.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("ulaw") | Some("ul") => "audio/basic",
        _ => "application/octet-stream",
    };
    let safe: String = name
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.into());
    attributes.insert(
        Attribute::ContentDisposition,
        format!("attachment; filename=\"{safe}\"").into(),
    );
    attributes
}
