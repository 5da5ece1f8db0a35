//! The dialplans folder: every flow file and `settings.toml` read, checked and assembled into one set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::{Flow, FlowError, FlowSet};
use super::parse::{parse_flow, parse_settings};
use super::settings::{Settings, SETTINGS_FILE};

/// Reads every `*.toml` of `dir`. Returns each file's parse result (flow files by path) and the
/// settings result.
pub struct FolderRead {
    pub flows: BTreeMap<PathBuf, Result<Flow, Vec<FlowError>>>,
    pub settings: Option<Result<Settings, Vec<FlowError>>>,
}

pub fn read_folder(dir: &Path) -> Result<FolderRead, FlowError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FlowError {
        file: dir.to_path_buf(),
        node: None,
        field: None,
        message: format!("cannot read the dialplans folder: {e}"),
    })?;
    let mut flows = BTreeMap::new();
    let mut settings = None;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let error = FlowError {
                    file: path.clone(),
                    node: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                };
                if path.file_name().is_some_and(|n| n == SETTINGS_FILE) {
                    settings = Some(Err(vec![error]));
                } else {
                    flows.insert(path, Err(vec![error]));
                }
                continue;
            }
        };
        if path.file_name().is_some_and(|n| n == SETTINGS_FILE) {
            settings = Some(parse_settings(&path, &text));
        } else {
            flows.insert(path.clone(), parse_flow(&path, &text));
        }
    }
    Ok(FolderRead { flows, settings })
}

/// Builds a set from per-file flows, refusing numbers claimed twice (the file read later loses).
pub fn assemble(flows: Vec<Flow>, settings: Settings) -> (FlowSet, Vec<FlowError>) {
    let mut set = FlowSet {
        settings,
        ..FlowSet::default()
    };
    let mut errors = Vec::new();
    for flow in flows {
        let clash: Vec<&String> = flow
            .numbers
            .iter()
            .filter(|n| set.by_number.contains_key(*n))
            .collect();
        if let Some(number) = clash.first() {
            errors.push(FlowError {
                file: flow.file.clone(),
                node: None,
                field: Some("numbers".into()),
                message: format!(
                    "number {number:?} is already used by flow {:?}",
                    set.by_number[*number]
                ),
            });
            continue;
        }
        for n in &flow.numbers {
            set.by_number.insert(n.clone(), flow.name.clone());
        }
        set.flows.insert(flow.name.clone(), Arc::new(flow));
    }
    (set, errors)
}

/// `check`: every problem of the folder, or the valid set.
pub fn check_folder(dir: &Path) -> Result<FlowSet, Vec<FlowError>> {
    let read = read_folder(dir).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut good = Vec::new();
    for result in read.flows.into_values() {
        match result {
            Ok(flow) => good.push(flow),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let settings = match read.settings {
        Some(Ok(s)) => s,
        Some(Err(mut e)) => {
            errors.append(&mut e);
            Settings::default()
        }
        None => Settings::default(),
    };
    let (set, mut clashes) = assemble(good, settings);
    errors.append(&mut clashes);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}
