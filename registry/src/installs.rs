//! Per-tenant installs: install, update, enable/disable, uninstall, and resolving the enabled
//! install the gateway runs. Granted capabilities must be a subset of what the installed
//! version's manifest requests.

use std::collections::{BTreeMap, BTreeSet};

use libsql::params;

use crate::bundle::ContentHash;
use crate::db::now;
use crate::install_policy::InstallPolicy;
use crate::manifest::{DEFAULT_GRANTS, Endpoint, canonical_capability};
use crate::publish::{VERSION_COLUMNS, VersionInfo, version_from_row};
use crate::secrets::Secrets;
use crate::{Registry, RegistryError};

/// What to install for a tenant.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// Tenant id.
    pub tenant: String,
    /// Extension name.
    pub extension: String,
    /// Version to install.
    pub version: String,
    /// Capabilities to grant (`cap:x` or `x`).
    pub grants: Vec<String>,
    /// The install's config map.
    pub config: BTreeMap<String, String>,
    /// Secrets, sealed with the node key before they are stored.
    pub secrets: Secrets,
    /// Overrides of the node's gateway policies.
    pub policy: InstallPolicy,
}

/// A tenant's install.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Install {
    /// Install id.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Extension name.
    pub extension: String,
    /// Installed version.
    pub version: String,
    /// Granted capabilities, canonical and sorted.
    pub grants: Vec<String>,
    /// Config map.
    pub config: BTreeMap<String, String>,
    /// Whether requests are served.
    pub enabled: bool,
    /// Overrides of the node's gateway policies.
    pub policy: InstallPolicy,
}

/// What the gateway needs to run a tenant's enabled install.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedInstall {
    /// The install.
    pub install: Install,
    /// Its version's id.
    pub version_id: String,
    /// Bundle to load.
    pub content_hash: ContentHash,
    /// Signature to re-verify before loading.
    pub signature: String,
    /// Manifest publisher (part of the signed claims).
    pub publisher: String,
    /// The sealed secrets envelope, if the install has secrets.
    pub sealed_secrets: Option<Vec<u8>>,
    /// The version's declared `api.endpoints` (enforced only when the policy says so).
    pub endpoints: Vec<Endpoint>,
}

impl Registry {
    /// Installs `request.extension@request.version` for `request.tenant`.
    pub async fn install(&self, request: &InstallRequest) -> Result<Install, RegistryError> {
        check_tenant(&request.tenant)?;
        request.policy.validate()?;
        let writer = self.writer().await?;
        let version = self
            .installable_version(&request.extension, &request.version)
            .await?;
        let grants = checked_grants(&request.grants, &version)?;
        if self
            .install_of(&request.tenant, &request.extension)
            .await?
            .is_some()
        {
            return Err(RegistryError::AlreadyInstalled {
                tenant: request.tenant.clone(),
                name: request.extension.clone(),
            });
        }
        let at = now();
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = match (&self.sealer, request.secrets.is_empty()) {
            (_, true) => None,
            (Some(sealer), false) => Some(sealer.seal(&id, &request.secrets)?),
            (None, false) => return Err(RegistryError::NoSecretsKey),
        };
        writer
            .execute(
                "INSERT INTO tenant_extension_install
                   (id, tenant_id, extension_name, version_id, granted_capabilities, config, sealed_secrets, policy, enabled, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9)",
                params![
                    id.clone(),
                    request.tenant.clone(),
                    request.extension.clone(),
                    version.id.clone(),
                    to_json(&grants)?,
                    to_json(&request.config)?,
                    sealed.map_or(libsql::Value::Null, libsql::Value::Blob),
                    to_json(&request.policy)?,
                    at
                ],
            )
            .await?;
        self.install_of(&request.tenant, &request.extension)
            .await?
            .ok_or_else(|| RegistryError::Corrupt(format!("install {id} vanished after insert")))
    }

    /// Moves an install to another version; its grants must still be requested by that version.
    pub async fn update(
        &self,
        tenant: &str,
        extension: &str,
        version: &str,
    ) -> Result<Install, RegistryError> {
        let writer = self.writer().await?;
        let current = self.require_install(tenant, extension).await?;
        let target = self.installable_version(extension, version).await?;
        checked_grants(&current.grants, &target)?;
        writer
            .execute(
                "UPDATE tenant_extension_install SET version_id = ?1, updated_at = ?2
                 WHERE tenant_id = ?3 AND extension_name = ?4",
                params![target.id, now(), tenant.to_owned(), extension.to_owned()],
            )
            .await?;
        self.require_install(tenant, extension).await
    }

    /// Replaces an install's policy overrides.
    pub async fn set_policy(
        &self,
        tenant: &str,
        extension: &str,
        policy: &InstallPolicy,
    ) -> Result<Install, RegistryError> {
        policy.validate()?;
        let changed = self
            .writer()
            .await?
            .execute(
                "UPDATE tenant_extension_install SET policy = ?1, updated_at = ?2
                 WHERE tenant_id = ?3 AND extension_name = ?4",
                params![
                    to_json(policy)?,
                    now(),
                    tenant.to_owned(),
                    extension.to_owned()
                ],
            )
            .await?;
        if changed == 0 {
            return Err(not_installed(tenant, extension));
        }
        self.require_install(tenant, extension).await
    }

    /// Enables or disables an install; a disabled install answers 404 at the gateway.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        extension: &str,
        enabled: bool,
    ) -> Result<(), RegistryError> {
        let changed = self
            .writer()
            .await?
            .execute(
                "UPDATE tenant_extension_install SET enabled = ?1, updated_at = ?2
                 WHERE tenant_id = ?3 AND extension_name = ?4",
                params![
                    i64::from(enabled),
                    now(),
                    tenant.to_owned(),
                    extension.to_owned()
                ],
            )
            .await?;
        if changed == 0 {
            return Err(not_installed(tenant, extension));
        }
        Ok(())
    }

    /// Removes an install.
    pub async fn uninstall(&self, tenant: &str, extension: &str) -> Result<(), RegistryError> {
        let changed = self
            .writer()
            .await?
            .execute(
                "DELETE FROM tenant_extension_install WHERE tenant_id = ?1 AND extension_name = ?2",
                [tenant, extension],
            )
            .await?;
        if changed == 0 {
            return Err(not_installed(tenant, extension));
        }
        Ok(())
    }

    /// Every install of `tenant`, by extension name.
    pub async fn installs(&self, tenant: &str) -> Result<Vec<Install>, RegistryError> {
        self.installs_where("i.tenant_id = ?1", [tenant])
            .await
            .map(|rows| rows.into_iter().map(|row| row.install).collect())
    }

    /// The install of `extension` by `tenant`, enabled or not.
    pub async fn install_of(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Option<Install>, RegistryError> {
        let mut rows = self
            .installs_where(
                "i.tenant_id = ?1 AND i.extension_name = ?2",
                [tenant, extension],
            )
            .await?;
        Ok(rows.pop().map(|row| row.install))
    }

    /// The enabled install the gateway should run for `tenant` and `extension`, if any.
    pub async fn resolve(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Option<ResolvedInstall>, RegistryError> {
        let mut rows = self
            .installs_where(
                "i.tenant_id = ?1 AND i.extension_name = ?2 AND i.enabled = 1",
                [tenant, extension],
            )
            .await?;
        Ok(rows.pop().map(|row| ResolvedInstall {
            endpoints: row
                .version
                .manifest
                .api
                .map(|api| api.endpoints)
                .unwrap_or_default(),
            version_id: row.version.id,
            content_hash: row.version.content_hash,
            signature: row.version.signature,
            publisher: row.version.manifest.publisher,
            sealed_secrets: row.sealed_secrets,
            install: row.install,
        }))
    }

    /// `tenant`'s install of `extension` (enabled or not) with its version's endpoints.
    pub(crate) async fn install_with_endpoints(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Option<(Install, Vec<crate::manifest::Endpoint>)>, RegistryError> {
        let mut rows = self
            .installs_where(
                "i.tenant_id = ?1 AND i.extension_name = ?2",
                [tenant, extension],
            )
            .await?;
        Ok(rows.pop().map(|row| {
            let endpoints = row
                .version
                .manifest
                .api
                .map(|api| api.endpoints)
                .unwrap_or_default();
            (row.install, endpoints)
        }))
    }

    /// The opened secrets of `tenant`'s install of `extension` (for the host, at call time).
    pub async fn secrets(&self, tenant: &str, extension: &str) -> Result<Secrets, RegistryError> {
        let mut rows = self
            .installs_where(
                "i.tenant_id = ?1 AND i.extension_name = ?2",
                [tenant, extension],
            )
            .await?;
        let row = rows.pop().ok_or_else(|| not_installed(tenant, extension))?;
        match (row.sealed_secrets, &self.sealer) {
            (None, _) => Ok(Secrets::default()),
            (Some(envelope), Some(sealer)) => Ok(sealer.open(&row.install.id, &envelope)?),
            (Some(_), None) => Err(RegistryError::NoSecretsKey),
        }
    }

    async fn require_install(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Install, RegistryError> {
        self.install_of(tenant, extension)
            .await?
            .ok_or_else(|| not_installed(tenant, extension))
    }

    async fn installable_version(
        &self,
        extension: &str,
        version: &str,
    ) -> Result<VersionInfo, RegistryError> {
        if self.publisher_of(extension).await?.is_none() {
            return Err(RegistryError::UnknownExtension(extension.to_owned()));
        }
        let found = self.version(extension, version).await?.ok_or_else(|| {
            RegistryError::UnknownVersion {
                name: extension.to_owned(),
                version: version.to_owned(),
            }
        })?;
        if found.deprecated {
            return Err(RegistryError::Deprecated {
                name: extension.to_owned(),
                version: version.to_owned(),
            });
        }
        Ok(found)
    }

    async fn installs_where<const N: usize>(
        &self,
        condition: &str,
        values: [&str; N],
    ) -> Result<Vec<InstallRow>, RegistryError> {
        // One query: the version comes from the same join, decoded by the shared helper.
        let sql = format!(
            "SELECT i.id, i.tenant_id, i.granted_capabilities, i.config, i.enabled, i.sealed_secrets, i.policy,
                    {VERSION_COLUMNS}
             FROM tenant_extension_install i JOIN extension_version v ON v.id = i.version_id
             WHERE {condition} ORDER BY i.extension_name"
        );
        let mut rows = self.read.query(&sql, values).await?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await? {
            let version = version_from_row(&row, 7)?;
            let grants: String = row.get(2)?;
            let config: String = row.get(3)?;
            let policy: String = row.get(6)?;
            let install = Install {
                id: row.get(0)?,
                tenant: row.get(1)?,
                grants: from_json(&grants)?,
                config: from_json(&config)?,
                enabled: row.get::<i64>(4)? != 0,
                policy: from_json(&policy)?,
                extension: version.name.clone(),
                version: version.version.clone(),
            };
            let sealed_secrets = match row.get_value(5)? {
                libsql::Value::Blob(envelope) => Some(envelope),
                _ => None,
            };
            found.push(InstallRow {
                install,
                version,
                sealed_secrets,
            });
        }
        Ok(found)
    }
}

/// One install with its version and sealed secrets, as read from the database.
struct InstallRow {
    install: Install,
    version: VersionInfo,
    sealed_secrets: Option<Vec<u8>>,
}

/// Canonical grants, each requested by `version`'s manifest or one of the [`DEFAULT_GRANTS`]
/// (which every install holds, so listing one is never an error).
fn checked_grants(grants: &[String], version: &VersionInfo) -> Result<Vec<String>, RegistryError> {
    let requested = version.manifest.capability_set();
    let mut granted = BTreeSet::new();
    for grant in grants {
        match canonical_capability(grant)
            .filter(|c| requested.contains(c) || DEFAULT_GRANTS.contains(&c.as_str()))
        {
            Some(canonical) => {
                granted.insert(canonical);
            }
            None => {
                return Err(RegistryError::GrantNotRequested {
                    capability: grant.clone(),
                    name: version.name.clone(),
                    version: version.version.clone(),
                    requested: if requested.is_empty() {
                        "nothing".into()
                    } else {
                        requested.into_iter().collect::<Vec<_>>().join(", ")
                    },
                });
            }
        }
    }
    Ok(granted.into_iter().collect())
}

/// Whether `tenant` is a tenant id every route accepts: 1-128 characters of
/// `A-Z a-z 0-9 . _ -`, not `.` or `..` (so it is safe in paths, logs and keys).
pub fn is_valid_tenant_id(tenant: &str) -> bool {
    (1..=128).contains(&tenant.len())
        && tenant != "."
        && tenant != ".."
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_tenant(tenant: &str) -> Result<(), RegistryError> {
    if is_valid_tenant_id(tenant) {
        Ok(())
    } else {
        Err(RegistryError::BadTenant(tenant.to_owned()))
    }
}

fn not_installed(tenant: &str, extension: &str) -> RegistryError {
    RegistryError::NotInstalled {
        tenant: tenant.to_owned(),
        name: extension.to_owned(),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, RegistryError> {
    serde_json::to_string(value).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, RegistryError> {
    serde_json::from_str(text).map_err(|e| RegistryError::Corrupt(e.to_string()))
}
