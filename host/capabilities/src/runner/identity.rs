//! `context.get-context`, `user.get-user` and `user-v2.get-user`: who the call runs for. The
//! values come from the gateway (install, request) and the caller (token claims or the runner
//! envelope's `user`), never from the guest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bindings::alga::extension::{context, user, user_v2};
use super::types::{ContextData, UserData, UserDataV2, UserError};
use crate::RequestCapabilities;

/// The end user a call runs for, as Alga's runner envelope names the fields (`user` of
/// `POST /v1/execute`; a tenant token's `user` claim has the same shape, its `user_id`
/// defaulting to the token's `sub`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUser {
    /// User id.
    #[serde(default)]
    pub user_id: String,
    /// E-mail address.
    #[serde(default)]
    pub user_email: String,
    /// Display name.
    #[serde(default)]
    pub user_name: String,
    /// `internal` or `client` in Alga PSA.
    #[serde(default)]
    pub user_type: String,
    /// The user's client (company); Alga's older name `company_name` is accepted.
    #[serde(default, alias = "company_name")]
    pub client_name: String,
    /// For client-portal users, their client's id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Further attributes the platform forwards.
    #[serde(default)]
    pub additional_fields: BTreeMap<String, String>,
}

impl EndUser {
    /// A user known only by id (a tenant token with a `sub` and no `user` claim).
    pub fn with_id(user_id: String) -> Self {
        Self {
            user_id,
            ..Self::default()
        }
    }
}

impl context::Host for RequestCapabilities {
    async fn get_context(&mut self) -> ContextData {
        // `cap:context.read` is granted to every install (as Alga's runner does), so there is
        // nothing to refuse here.
        self.runner.context.clone()
    }
}

impl RequestCapabilities {
    /// The end user, or why the guest may not see one.
    fn end_user(&self) -> Result<&EndUser, UserError> {
        let runner = &self.runner;
        if !runner.check(runner.granted.user, "user") {
            return Err(UserError::NotAllowed);
        }
        runner.user.as_deref().ok_or(UserError::NotAvailable)
    }
}

impl RequestCapabilities {
    /// The end user as `user-v2` reports it (`user` reports a subset of the same fields).
    fn user_data(&self) -> Result<UserDataV2, UserError> {
        let user = self.end_user()?;
        Ok(UserDataV2 {
            tenant_id: self.runner.context.tenant_id.clone(),
            client_name: user.client_name.clone(),
            user_id: user.user_id.clone(),
            user_email: user.user_email.clone(),
            user_name: user.user_name.clone(),
            user_type: user.user_type.clone(),
            client_id: user.client_id.clone(),
            additional_fields: user
                .additional_fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

impl user::Host for RequestCapabilities {
    async fn get_user(&mut self) -> Result<UserData, UserError> {
        let user = self.user_data()?;
        Ok(UserData {
            tenant_id: user.tenant_id,
            client_name: user.client_name,
            user_id: user.user_id,
            user_email: user.user_email,
            user_name: user.user_name,
            user_type: user.user_type,
        })
    }
}

impl user_v2::Host for RequestCapabilities {
    async fn get_user(&mut self) -> Result<UserDataV2, UserError> {
        self.user_data()
    }
}
