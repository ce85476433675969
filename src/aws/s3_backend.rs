//! State in S3. Writes are compare-and-swap on the ETag (`If-Match`, or `If-None-Match: *` for the
//! first write); the lock is a sibling `<key>.lock` object created with `If-None-Match: *`, renewed
//! and released with `If-Match` on its own ETag, so two processes can never both believe they hold
//! it. A missing bucket is created with versioning, default encryption and public access blocked.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};

use super::{Aws, sdk_error};
use crate::error::AwsError;
use crate::state::{Backend, LockInfo, StateDoc, StateError, StoredVersion, Version};

/// The IAM actions this backend calls (`infra policy`), AWS's names: on the bucket to read
/// (HeadBucket, ListObjectVersions, the checks of its protection) …
pub const IAM_BUCKET_READS: &[&str] = &[
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketPublicAccessBlock",
];
/// … on the state and lock objects to read (a version of the state, for its history) …
pub const IAM_OBJECT_READS: &[&str] = &["s3:GetObject", "s3:GetObjectVersion"];
/// … to write them (conditional puts, the lock's release) …
pub const IAM_OBJECT_WRITES: &[&str] = &["s3:PutObject", "s3:DeleteObject"];
/// … and to make a bucket safe when infra creates it.
pub const IAM_BUCKET_SETUP: &[&str] = &[
    "s3:CreateBucket",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
];

pub struct S3Backend {
    client: aws_sdk_s3::Client,
    region: String,
    bucket: String,
    key: String,
    /// A customer KMS key every state and lock write names (SSE-KMS); SSE-S3 otherwise.
    kms_key_id: Option<String>,
}

impl S3Backend {
    pub fn new(aws: &Aws, bucket: &str, key: &str, kms_key_id: Option<&str>) -> Self {
        S3Backend {
            client: aws.s3.clone(),
            region: aws.region.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            kms_key_id: kms_key_id.map(str::to_string),
        }
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, AwsError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = Version(out.e_tag().unwrap_or_default().to_string());
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| {
                        AwsError::local("s3", "GetObject", format!("reading the body: {e}"))
                    })?
                    .into_bytes()
                    .to_vec();
                Ok(Some((bytes, etag)))
            }
            Err(e) => {
                let e = sdk_error("s3", "GetObject")(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// A conditional put: `if_match` an ETag, or create only (`If-None-Match: *`).
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        if_match: Option<&Version>,
    ) -> Result<Version, PutError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .set_server_side_encryption(
                self.kms_key_id
                    .as_ref()
                    .map(|_| ServerSideEncryption::AwsKms),
            )
            .set_ssekms_key_id(self.kms_key_id.clone())
            .body(ByteStream::from(body.clone()));
        let req = match if_match {
            Some(v) => req.if_match(&v.0),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(Version(out.e_tag().unwrap_or_default().to_string())),
            Err(e) => {
                let e = sdk_error("s3", "PutObject")(e);
                // 412: the condition failed. 409: a concurrent conditional write won. 404: the
                // object the condition named is gone.
                if !matches!(e.status, Some(412 | 409 | 404)) {
                    return Err(PutError::Aws(e));
                }
                // An earlier attempt of this very call may have been written with its answer
                // lost, and the SDK's retry then failed the condition on our own write. Every body
                // is unique (a state serial, a lock id and expiry): finding it there means it was
                // ours.
                match self.get(key).await {
                    Ok(Some((stored, v))) if stored == body => Ok(v),
                    _ => Err(PutError::Condition),
                }
            }
        }
    }
}

enum PutError {
    Condition,
    Aws(AwsError),
}

fn decode_lock(bytes: &[u8]) -> Result<LockInfo, StateError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StateError::Io(format!("the lock object is not valid: {e}")))
}

/// A listed version: its id, when it was written, whether it is the current one.
type Listed = (String, Option<jiff::Timestamp>, bool);

impl S3Backend {
    /// The newest `n` versions of the document, newest first: ListObjectVersions, paged.
    async fn listed(&self, n: usize) -> Result<Vec<Listed>, StateError> {
        let mut listed = Vec::new();
        let mut key_marker = None;
        let mut version_marker = None;
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&self.key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(sdk_error("s3", "ListObjectVersions"))?;
            listed.extend(
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(self.key.as_str()))
                    .filter_map(|v| {
                        Some((
                            v.version_id()?.to_string(),
                            v.last_modified()
                                .and_then(|t| jiff::Timestamp::from_second(t.secs()).ok()),
                            v.is_latest() == Some(true),
                        ))
                    }),
            );
            if out.is_truncated() != Some(true) || listed.len() >= n {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            version_marker = out.next_version_id_marker().map(str::to_string);
        }
        listed.truncate(n);
        Ok(listed)
    }

    /// The bodies of listed versions, ten reads at a time, in the listing's order.
    async fn bodies(&self, listed: Vec<Listed>) -> Result<Vec<StoredVersion>, StateError> {
        let bodies = futures::stream::iter(listed.into_iter().map(|(id, at, latest)| async move {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .version_id(&id)
                .send()
                .await
                .map_err(sdk_error("s3", "GetObject"))?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| AwsError::local("s3", "GetObject", format!("reading the body: {e}")))?
                .into_bytes()
                .to_vec();
            Ok::<_, AwsError>(StoredVersion {
                id,
                last_modified: at,
                latest,
                bytes,
            })
        }));
        use futures::StreamExt;
        let got: Vec<Result<StoredVersion, AwsError>> = bodies.buffered(10).collect().await;
        got.into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(StateError::from)
    }
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn weaknesses(&self) -> Result<Vec<String>, StateError> {
        let b = &self.bucket;
        // Versioning as the state object shows it: S3 gives objects of a bucket that is not
        // versioned the version id "null" (nothing to judge before the first write).
        let (versions, encryption, public) = futures::join!(
            self.client
                .list_object_versions()
                .bucket(b)
                .prefix(&self.key)
                .max_keys(1)
                .send(),
            self.client.get_bucket_encryption().bucket(b).send(),
            self.client.get_public_access_block().bucket(b).send(),
        );
        let mut out = Vec::new();
        let versions = versions.map_err(sdk_error("s3", "ListObjectVersions"))?;
        if versions
            .versions()
            .first()
            .is_some_and(|v| v.version_id().is_none_or(|id| id == "null"))
        {
            out.push("versioning is off (an overwritten state cannot be restored)".to_string());
        }
        match encryption.map_err(sdk_error("s3", "GetBucketEncryption")) {
            Ok(_) => {}
            Err(e) if e.code_is("ServerSideEncryptionConfigurationNotFoundError") => {
                out.push("it has no default encryption".to_string());
            }
            Err(e) => return Err(e.into()),
        }
        let blocked = match public.map_err(sdk_error("s3", "GetPublicAccessBlock")) {
            Ok(o) => o.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            }),
            Err(e) if e.code_is("NoSuchPublicAccessBlockConfiguration") => false,
            Err(e) => return Err(e.into()),
        };
        if !blocked {
            out.push("public access is not blocked".to_string());
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn exists(&self) -> Result<bool, StateError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = sdk_error("s3", "HeadBucket")(e);
                if e.status == Some(404) || e.is_not_found() {
                    Ok(false)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    async fn ensure(&self) -> Result<(), StateError> {
        if self.exists().await? {
            return Ok(());
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        if self.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        if let Err(e) = create.send().await {
            let e = sdk_error("s3", "CreateBucket")(e);
            if !e.code_is("BucketAlreadyOwnedByYou") {
                return Err(e.into());
            }
        }
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error("s3", "PutBucketVersioning"))?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(match self.kms_key_id {
                        Some(_) => ServerSideEncryption::AwsKms,
                        None => ServerSideEncryption::Aes256,
                    })
                    .set_kms_master_key_id(self.kms_key_id.clone())
                    .build()
                    .map_err(|e| AwsError::local("s3", "PutBucketEncryption", e.to_string()))?,
            )
            .build();
        self.client
            .put_bucket_encryption()
            .bucket(&self.bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .map_err(|e| AwsError::local("s3", "PutBucketEncryption", e.to_string()))?,
            )
            .send()
            .await
            .map_err(sdk_error("s3", "PutBucketEncryption"))?;
        self.client
            .put_public_access_block()
            .bucket(&self.bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error("s3", "PutPublicAccessBlock"))?;
        Ok(())
    }

    async fn read(&self) -> Result<Option<(StateDoc, Version)>, StateError> {
        match self.get(&self.key).await? {
            None => Ok(None),
            Some((bytes, v)) => Ok(Some((StateDoc::decode(&bytes)?, v))),
        }
    }

    async fn read_raw(&self) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        Ok(self.get(&self.key).await?)
    }

    /// ListObjectVersions (newest first, the order S3 keeps; `LastModified` has one-second
    /// resolution), then each version's body, ten at a time.
    async fn newest(&self, n: usize) -> Result<Vec<StoredVersion>, StateError> {
        let listed = self.listed(n).await?;
        self.bodies(listed).await
    }

    /// The version before the current one: one listing, one read (the current one's body is
    /// what the caller just read).
    async fn previous(&self) -> Result<Option<StoredVersion>, StateError> {
        let listed: Vec<Listed> = self
            .listed(2)
            .await?
            .into_iter()
            .filter(|(_, _, latest)| !latest)
            .collect();
        Ok(self.bodies(listed).await?.into_iter().next())
    }

    async fn write(&self, doc: &StateDoc, prev: Option<&Version>) -> Result<Version, StateError> {
        match self.put(&self.key, doc.encode(), prev).await {
            Ok(v) => Ok(v),
            Err(PutError::Condition) => Err(StateError::Conflict),
            Err(PutError::Aws(e)) => Err(e.into()),
        }
    }

    async fn lock(&self, info: &LockInfo) -> Result<(Version, Option<LockInfo>), StateError> {
        let body = serde_json::to_vec_pretty(info).expect("lock serialises");
        match self.put(&self.lock_key(), body.clone(), None).await {
            Ok(v) => return Ok((v, None)),
            Err(PutError::Aws(e)) => return Err(e.into()),
            Err(PutError::Condition) => {}
        }
        let Some((held, etag)) = self.lock_info().await? else {
            // Released between our two calls: try once more.
            return match self.put(&self.lock_key(), body, None).await {
                Ok(v) => Ok((v, None)),
                Err(PutError::Aws(e)) => Err(e.into()),
                Err(PutError::Condition) => Err(StateError::Conflict),
            };
        };
        if !held.expired() {
            return Err(StateError::Locked(Box::new(held)));
        }
        // Take over the expired lease, but only if nobody else did first.
        match self.put(&self.lock_key(), body, Some(&etag)).await {
            Ok(v) => Ok((v, Some(held))),
            Err(PutError::Aws(e)) => Err(e.into()),
            Err(PutError::Condition) => match self.lock_info().await? {
                Some((now, _)) => Err(StateError::Locked(Box::new(now))),
                None => Err(StateError::Conflict),
            },
        }
    }

    async fn renew(&self, info: &LockInfo, held: &Version) -> Result<Version, StateError> {
        let body = serde_json::to_vec_pretty(info).expect("lock serialises");
        match self.put(&self.lock_key(), body, Some(held)).await {
            Ok(v) => Ok(v),
            Err(PutError::Condition) => Err(StateError::LockLost),
            Err(PutError::Aws(e)) => Err(e.into()),
        }
    }

    async fn unlock(&self, held: &Version) -> Result<(), StateError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .if_match(&held.0)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("s3", "DeleteObject")(e);
                match e.status {
                    // Gone already (our own earlier attempt, its answer lost): released.
                    Some(404) => Ok(()),
                    Some(412) => Err(StateError::LockLost),
                    _ => Err(e.into()),
                }
            }
        }
    }

    async fn lock_info(&self) -> Result<Option<(LockInfo, Version)>, StateError> {
        match self.get(&self.lock_key()).await? {
            None => Ok(None),
            Some((bytes, v)) => Ok(Some((decode_lock(&bytes)?, v))),
        }
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        match self.lock_info().await? {
            Some((info, v)) if info.id == id => {
                self.unlock(&v).await.map_err(|e| match e {
                    StateError::LockLost => StateError::NoSuchLock(id.to_string()),
                    other => other,
                })?;
                Ok(info)
            }
            _ => Err(StateError::NoSuchLock(id.to_string())),
        }
    }
}
