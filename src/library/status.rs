//! What a recording's row says of it: its status, consent, compliance, node type, direction
//! and format. One list each, used by the API's checks, the list's filters, the OpenAPI
//! document, the page's choices, the access policy, the rows the flows write and the probe.

use super::probe::Status;

/// An enum of named values with one list: `ALL`, `as_str`, `parse`, `names`.
macro_rules! named_values {
    (@one $variant:ident) => { () };
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            pub const ALL: [$name; [$(named_values!(@one $variant)),+].len()] =
                [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Every name, in the order of `ALL`.
            pub fn names() -> Vec<&'static str> {
                $name::ALL.iter().map(|v| v.as_str()).collect()
            }

            pub fn parse(name: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|v| v.as_str() == name)
            }
        }

        /// In the API's description: a string, one of the list.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::names()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Stored as its name; a name not in the list is refused with the name and the list.
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: sqlx::any::AnyValueRef<'r>,
            ) -> Result<$name, sqlx::error::BoxDynError> {
                let name = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                $name::parse(&name).ok_or_else(|| {
                    format!(
                        "{name:?} is not a {} (one of {})",
                        stringify!($name),
                        $name::names().join(", ")
                    )
                    .into()
                })
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl NamedValue for $name {
            fn parse(name: &str) -> Option<$name> {
                $name::parse(name)
            }

            fn names() -> Vec<&'static str> {
                $name::names()
            }
        }
    };
}

/// A value of one of the lists below, for code that takes any of them (a request's parameter).
pub trait NamedValue: Sized {
    fn parse(name: &str) -> Option<Self>;
    fn names() -> Vec<&'static str>;
}

named_values! {
    /// A recording's status in the library.
    pub enum RecordingStatus {
        /// Still being written.
        Recording => "recording",
        /// Final and playable.
        Ready => "ready",
        /// No audio at all.
        Empty => "empty",
        /// Cannot be read, or not what its extension says.
        Unreadable => "unreadable",
        /// A real Asterisk format this service does not play.
        NotPlayable => "not_playable",
        /// The file left the disk.
        Missing => "missing",
        /// Deleted through the API (the row is a tombstone).
        Deleted => "deleted",
        /// Its audio removed by a retention rule (the row stays).
        Purged => "purged",
        /// A bridged call its switches said not to record (no file).
        NotRecorded => "not_recorded",
        /// A call's file whose metadata has not arrived: hidden until it does.
        Quarantined => "quarantined",
    }
}

named_values! {
    /// Whether the caller agreed to being recorded (a consent node, or a notice they heard).
    pub enum Consent {
        Granted => "granted",
        Denied => "denied",
        /// Nobody asked, or the call's metadata has not said.
        Unknown => "unknown",
        /// By conduct: a voicemail message left after a greeting that says it is recorded.
        /// Enough for admins and managers to play it, not for staff.
        Implied => "implied",
    }
}

named_values! {
    /// Whether the recording may be used, as an admin recorded it (or the deployment's default).
    pub enum Compliance {
        Permitted => "permitted",
        Denied => "denied",
        /// Evidence of a lawful basis is still to be recorded.
        MissingEvidence => "missing_evidence",
        /// A policy of the tenant blocks it.
        PolicyBlocked => "policy_blocked",
        /// The strict default: blocked until an admin records the evidence.
        Unknown => "unknown",
    }
}

named_values! {
    /// What made a recording: the kind of flow node, a direct outbound call, or Asterisk's own
    /// dialplan while the service was away.
    pub enum NodeType {
        Transfer => "transfer",
        Queue => "queue",
        HuntGroup => "hunt_group",
        Voicemail => "voicemail",
        /// A call placed through the API, outside any flow.
        Outbound => "outbound",
        /// MixMonitor in the dialplan's fallback, while the service was away.
        Fallback => "fallback",
    }
}

named_values! {
    /// Where a call came from. Saved calls keep serde's variant names (`"Inbound"`).
    #[derive(serde::Serialize, serde::Deserialize)]
    pub enum Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
}

named_values! {
    /// The formats Asterisk writes recordings in: a recording's format is its file's extension,
    /// and other files in the folder are not recordings.
    pub enum RecordingFormat {
        Wav => "wav",
        Wav16 => "wav16",
        /// GSM in a WAV container (Asterisk's own spelling).
        WavGsm => "WAV",
        Ulaw => "ulaw",
        Alaw => "alaw",
        Sln => "sln",
        Gsm => "gsm",
        G722 => "g722",
    }
}

impl From<Status> for RecordingStatus {
    fn from(status: Status) -> RecordingStatus {
        match status {
            Status::Recording => RecordingStatus::Recording,
            Status::Ready => RecordingStatus::Ready,
            Status::Empty => RecordingStatus::Empty,
            Status::Unreadable => RecordingStatus::Unreadable,
            Status::NotPlayable => RecordingStatus::NotPlayable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_the_probe_says_the_same_words() {
        for status in RecordingStatus::ALL {
            assert_eq!(RecordingStatus::parse(status.as_str()), Some(status));
        }
        for probe in [
            Status::Recording,
            Status::Ready,
            Status::Empty,
            Status::Unreadable,
            Status::NotPlayable,
        ] {
            assert_eq!(RecordingStatus::from(probe).as_str(), probe.as_str());
        }
        assert_eq!(RecordingStatus::parse("ok"), None);
        assert_eq!(
            Consent::names(),
            ["granted", "denied", "unknown", "implied"]
        );
        for compliance in Compliance::ALL {
            assert_eq!(Compliance::parse(compliance.as_str()), Some(compliance));
        }
        assert_eq!(NodeType::parse("hunt_group"), Some(NodeType::HuntGroup));
        assert_eq!(Direction::names(), ["inbound", "outbound"]);
        // Extensions are case-sensitive: WAV is Asterisk's GSM-in-WAV, not a louder wav.
        assert_eq!(RecordingFormat::parse("WAV"), Some(RecordingFormat::WavGsm));
        assert_eq!(RecordingFormat::parse("Wav"), None);
    }
}
