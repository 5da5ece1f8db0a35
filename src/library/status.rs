//! What a recording's row says of its audio: one list, used by the list's filter, the OpenAPI
//! document and the probe.

use super::probe::Status;

/// A recording's status in the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    /// Still being written.
    Recording,
    /// Final and playable.
    Ready,
    /// No audio at all.
    Empty,
    /// Cannot be read, or not what its extension says.
    Unreadable,
    /// A real Asterisk format this service does not play.
    NotPlayable,
    /// The file left the disk.
    Missing,
    /// Deleted through the API (the row is a tombstone).
    Deleted,
    /// Its audio removed by a retention rule (the row stays).
    Purged,
    /// A bridged call its switches said not to record (no file).
    NotRecorded,
    /// A call's file whose metadata has not arrived: hidden until it does.
    Quarantined,
}

impl RecordingStatus {
    pub const ALL: [RecordingStatus; 10] = [
        RecordingStatus::Recording,
        RecordingStatus::Ready,
        RecordingStatus::Empty,
        RecordingStatus::Unreadable,
        RecordingStatus::NotPlayable,
        RecordingStatus::Missing,
        RecordingStatus::Deleted,
        RecordingStatus::Purged,
        RecordingStatus::NotRecorded,
        RecordingStatus::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::Recording => "recording",
            RecordingStatus::Ready => "ready",
            RecordingStatus::Empty => "empty",
            RecordingStatus::Unreadable => "unreadable",
            RecordingStatus::NotPlayable => "not_playable",
            RecordingStatus::Missing => "missing",
            RecordingStatus::Deleted => "deleted",
            RecordingStatus::Purged => "purged",
            RecordingStatus::NotRecorded => "not_recorded",
            RecordingStatus::Quarantined => "quarantined",
        }
    }

    /// Every status's name, in the order of [`RecordingStatus::ALL`].
    pub fn names() -> [&'static str; 10] {
        RecordingStatus::ALL.map(RecordingStatus::as_str)
    }

    pub fn parse(name: &str) -> Option<RecordingStatus> {
        RecordingStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
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
    }
}
