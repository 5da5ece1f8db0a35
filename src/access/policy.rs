//! Who may do what to a recording: one pure function of the principal, the tenant's settings
//! and the recording's facts, so every endpoint (and the recording's own JSON) asks the same
//! question and gets the same answer.

use super::{Principal, Role, Scope};
use crate::library::{Compliance, Consent, RecordingStatus};

/// The tenant's entitlements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// Staff may play recordings (never download).
    pub staff_playback: bool,
    /// The tenant bought downloads.
    pub download_entitlement: bool,
}

/// What the policy needs to know of a recording.
#[derive(Debug, Clone, Copy)]
pub struct RecordingFacts<'a> {
    pub tenant: &'a str,
    pub project: &'a str,
    pub private: bool,
    /// Comma-separated endpoints, numbers and user names of the people on the call.
    pub participants: &'a str,
    pub consent: Consent,
    pub compliance: Compliance,
    /// `ready` when there is audio to serve.
    pub status: RecordingStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See it in lists, read its metadata and waveform.
    Read,
    Play,
    Download,
    Delete,
    /// Change consent or compliance status.
    SetStatus,
}

impl Action {
    fn scope(self) -> Scope {
        match self {
            Action::Read => Scope::RecordingsRead,
            Action::Play => Scope::RecordingsPlay,
            Action::Download => Scope::RecordingsDownload,
            Action::Delete => Scope::RecordingsDelete,
            Action::SetStatus => Scope::Admin,
        }
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Another tenant's or project's recording: answered exactly like one that does not exist.
    OutOfScope,
    /// A private recording and the principal was not on the call.
    Private,
    /// The API token lacks the scope.
    MissingScope,
    RoleRestriction,
    MissingEntitlement,
    MissingConsent,
    CompliancePolicy,
    MediaUnavailable,
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Denial::OutOfScope => "not_found",
            Denial::Private => "private_recording",
            Denial::MissingScope => "missing_scope",
            Denial::RoleRestriction => "role_restriction",
            Denial::MissingEntitlement => "missing_entitlement",
            Denial::MissingConsent => "missing_consent",
            Denial::CompliancePolicy => "compliance_policy",
            Denial::MediaUnavailable => "media_unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denial::OutOfScope => "no such recording",
            Denial::Private => "this recording is private to the people on the call",
            Denial::MissingScope => "the API token does not carry the scope for this action",
            Denial::RoleRestriction => "your role does not allow this action",
            Denial::MissingEntitlement => "your organisation's plan does not include this action",
            Denial::MissingConsent => "the caller did not consent to this recording being used",
            Denial::CompliancePolicy => "a compliance policy blocks access to this recording",
            Denial::MediaUnavailable => "there is no playable audio for this recording",
        }
    }
}

/// The recording is in the principal's tenant and projects.
pub fn in_scope(principal: &Principal, tenant: &str, project: &str) -> bool {
    principal.tenant == tenant
        && (principal.projects.is_empty() || principal.projects.iter().any(|p| p == project))
}

/// The principal was on the call: their extension is among the participants. Only the
/// extension an admin assigned (and audited) counts, never the user name: participants are
/// numbers and endpoints a caller chooses (a caller ID), so a user named after a caller's number
/// must not inherit their private calls.
pub fn is_participant(principal: &Principal, participants: &str) -> bool {
    let Some(extension) = principal.extension.as_deref().filter(|e| !e.is_empty()) else {
        return false;
    };
    // Exact and case-sensitive, as the list's SQL compares.
    participants.split(',').any(|p| p == extension)
}

/// A private recording nobody was on (a call's file whose metadata never came: quarantined, or
/// filed for the operator's tenant) is for the tenant's admins, or it would be seen by no one.
fn sees_unclaimed(principal: &Principal, recording: &RecordingFacts<'_>) -> bool {
    principal.role == Role::Admin
        && principal.projects.is_empty()
        && recording.participants.is_empty()
}

/// May `principal` do `action` on the recording? The checks run from "may you know it exists"
/// to "is there audio", so the first refusal is the most fundamental one.
pub fn decide(
    principal: &Principal,
    tenant: TenantSettings,
    recording: &RecordingFacts<'_>,
    action: Action,
) -> Result<(), Denial> {
    if !in_scope(principal, recording.tenant, recording.project) {
        return Err(Denial::OutOfScope);
    }
    if recording.private
        && !is_participant(principal, recording.participants)
        && !sees_unclaimed(principal, recording)
    {
        return Err(Denial::Private);
    }
    if !principal.has_scope(action.scope()) {
        return Err(Denial::MissingScope);
    }
    let role = principal.role;
    match action {
        Action::Read => return Ok(()),
        Action::Delete | Action::SetStatus => {
            return if role == Role::Admin {
                Ok(())
            } else {
                Err(Denial::RoleRestriction)
            };
        }
        Action::Play => {
            if role == Role::Staff && !tenant.staff_playback {
                return Err(Denial::RoleRestriction);
            }
        }
        Action::Download => {
            // Staff never download, whatever the tenant bought.
            if role == Role::Staff {
                return Err(Denial::RoleRestriction);
            }
            if !tenant.download_entitlement {
                return Err(Denial::MissingEntitlement);
            }
        }
    }
    match recording.consent {
        Consent::Granted => {}
        // Consent by conduct (a message left after a greeting that says it is recorded) is
        // enough for those who handle the messages, not for staff.
        Consent::Implied if matches!(role, Role::Admin | Role::Manager) => {}
        Consent::Implied | Consent::Denied | Consent::Unknown => {
            return Err(Denial::MissingConsent)
        }
    }
    if recording.compliance != Compliance::Permitted {
        return Err(Denial::CompliancePolicy);
    }
    if recording.status != RecordingStatus::Ready {
        return Err(Denial::MediaUnavailable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Credential;

    fn principal(role: Role) -> Principal {
        Principal {
            user_id: 1,
            username: "alice".into(),
            role,
            tenant: "acme".into(),
            projects: vec!["support".into()],
            extension: Some("PJSIP/201".into()),
            credential: Credential::Session,
            settings: TenantSettings::default(),
        }
    }

    fn facts() -> RecordingFacts<'static> {
        RecordingFacts {
            tenant: "acme",
            project: "support",
            private: false,
            participants: "5550100,PJSIP/202",
            consent: Consent::Granted,
            compliance: Compliance::Permitted,
            status: RecordingStatus::Ready,
        }
    }

    #[test]
    fn scope_comes_before_everything() {
        let admin = principal(Role::Admin);
        let other = RecordingFacts {
            project: "sales",
            ..facts()
        };
        assert_eq!(
            decide(&admin, TenantSettings::default(), &other, Action::Read),
            Err(Denial::OutOfScope)
        );
    }

    #[test]
    fn private_recordings_are_for_participants() {
        let manager = principal(Role::Manager);
        let private = RecordingFacts {
            private: true,
            ..facts()
        };
        assert_eq!(
            decide(&manager, TenantSettings::default(), &private, Action::Read),
            Err(Denial::Private)
        );
        let on_call = RecordingFacts {
            participants: "5550100,PJSIP/201",
            ..private
        };
        assert_eq!(
            decide(&manager, TenantSettings::default(), &on_call, Action::Read),
            Ok(())
        );
    }

    #[test]
    fn tokens_are_limited_to_their_scopes() {
        let mut admin = principal(Role::Admin);
        admin.credential = Credential::Token {
            id: 3,
            scopes: vec![Scope::RecordingsRead],
        };
        let all = TenantSettings {
            staff_playback: true,
            download_entitlement: true,
        };
        assert_eq!(decide(&admin, all, &facts(), Action::Read), Ok(()));
        assert_eq!(
            decide(&admin, all, &facts(), Action::Play),
            Err(Denial::MissingScope)
        );
    }

    /// A voicemail left after a greeting that says it is recorded (consent `implied`) plays for
    /// admins and managers, not for staff, even where the tenant lets staff play.
    #[test]
    fn implied_consent_is_enough_for_admins_and_managers_only() {
        let implied = RecordingFacts {
            consent: Consent::Implied,
            ..facts()
        };
        let tenant = TenantSettings {
            staff_playback: true,
            ..TenantSettings::default()
        };
        for role in [Role::Admin, Role::Manager] {
            assert_eq!(
                decide(&principal(role), tenant, &implied, Action::Play),
                Ok(())
            );
        }
        assert_eq!(
            decide(&principal(Role::Staff), tenant, &implied, Action::Play),
            Err(Denial::MissingConsent)
        );
    }
}
