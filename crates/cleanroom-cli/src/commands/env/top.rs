//! `cleanroom top`: a live terminal dashboard of environments and their
//! services' sandboxes (state, health, CPU, memory, pids from their
//! cgroups) with the selected service's log tail; `s` stops it, `r`
//! restarts it, `q` quits.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom::bridge::wait;
use cleanroom::{Backend, SandboxInfo, SandboxState, Stats};
use cleanroom_env::engine;
use cleanroom_env::plan::{ENV_LABEL, POD_SERVICE};
use cleanroom_env::{EnvError, Plan};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};

use super::args::TopArgs;
use super::{backend_and_spec, report};

/// How many log lines the lower pane shows.
const LOG_LINES: usize = 12;

/// One row: a service's sandbox and what was read about it.
struct ServiceRow {
    env: String,
    service: String,
    info: SandboxInfo,
    stats: Option<Stats>,
    /// `healthy`, `unhealthy: ...`, or `-` without a health check.
    health: String,
}

pub fn top(args: TopArgs) -> cleanroom::Result<ExitCode> {
    let setup = wait(async {
        let (backend, spec) = backend_and_spec(&args.sandbox).await?;
        // The environment of this directory, when there is one: its plan
        // gives health checks and what `r` restarts.
        let plan = cleanroom_env::load(&cleanroom_env::LoadOptions {
            dir: super::super::current_dir()?,
            ..Default::default()
        })
        .ok()
        .and_then(|env| cleanroom_env::plan(&env, &[], backend.as_ref(), &spec).ok());
        Ok::<_, EnvError>((backend, plan))
    });
    let (backend, plan) = match setup {
        Ok(x) => x,
        Err(e) => return Ok(report(e)),
    };
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, backend, plan.as_ref(), &args);
    ratatui::restore();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(report(e)),
    }
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    backend: Arc<dyn Backend>,
    plan: Option<&Plan>,
    args: &TopArgs,
) -> Result<(), EnvError> {
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let mut rows: Vec<ServiceRow> = Vec::new();
    let mut table = TableState::default().with_selected(Some(0));
    let mut logs = String::new();
    let mut status = String::from("q quit · ↑/↓ select · s stop · r restart");
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            rows = wait(read_rows(backend.clone(), args.project_name.clone(), plan));
            let selected = table
                .selected()
                .unwrap_or(0)
                .min(rows.len().saturating_sub(1));
            table.select(Some(selected));
            logs = match rows.get(selected) {
                Some(r) => wait(tail(backend.as_ref(), &r.info.name)),
                None => String::new(),
            };
            next = Instant::now() + interval;
        }
        let draw = terminal.draw(|frame| {
            let [head, body, tail] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Min(5),
                Constraint::Length(LOG_LINES as u16 + 2),
            ])
            .areas(frame.area());
            frame.render_widget(
                Paragraph::new(Line::from(format!(
                    "cleanroom top — {} on {} · {status}",
                    environments(&rows),
                    backend.name()
                ))),
                head,
            );
            let header = Row::new([
                "ENVIRONMENT",
                "SERVICE",
                "STATE",
                "HEALTH",
                "CPU %",
                "MEMORY",
                "PIDS",
            ])
            .style(Style::new().add_modifier(Modifier::BOLD));
            let body_rows: Vec<Row> = rows.iter().map(row).collect();
            let widths = [
                Constraint::Length(16),
                Constraint::Length(14),
                Constraint::Length(12),
                Constraint::Length(22),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(5),
            ];
            let t = Table::new(body_rows, widths)
                .header(header)
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(if rows.is_empty() {
                            " no environments are up "
                        } else {
                            " services "
                        }),
                )
                .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
            frame.render_stateful_widget(t, body, &mut table);
            let title = rows
                .get(table.selected().unwrap_or(0))
                .map(|r| format!(" log of {} ", r.info.name))
                .unwrap_or_default();
            let lines: Vec<&str> = logs.lines().collect();
            let shown = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
            frame.render_widget(
                Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title)),
                tail,
            );
        });
        draw.map_err(|e| EnvError::Run(format!("drawing the dashboard: {e}")))?;
        if !event::poll(Duration::from_millis(100))
            .map_err(|e| EnvError::Run(format!("reading the terminal: {e}")))?
        {
            continue;
        }
        let Ok(Event::Key(key)) = event::read() else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let selected = table.selected().and_then(|i| rows.get(i));
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
            KeyCode::Down | KeyCode::Char('j') => {
                table.select(Some(
                    (table.selected().unwrap_or(0) + 1).min(rows.len().saturating_sub(1)),
                ));
                next = Instant::now();
            }
            KeyCode::Up | KeyCode::Char('k') => {
                table.select(Some(table.selected().unwrap_or(0).saturating_sub(1)));
                next = Instant::now();
            }
            KeyCode::Char('s') => {
                if let Some(r) = selected {
                    status = format!("stopping {}…", r.service);
                    let _ = terminal
                        .draw(|f| f.render_widget(Paragraph::new(status.clone()), f.area()));
                    let res = wait(engine::stop(
                        backend.as_ref(),
                        &r.env,
                        std::slice::from_ref(&r.service),
                    ));
                    status = match res {
                        Ok(_) => format!("stopped {}", r.service),
                        Err(e) => format!("stopping {}: {e}", r.service),
                    };
                    next = Instant::now();
                }
            }
            KeyCode::Char('r') => {
                if let Some(r) = selected {
                    status = match plan.filter(|p| p.env == r.env) {
                        Some(p) => match wait(engine::restart(backend.as_ref(), p, &r.service)) {
                            Ok(()) => format!("restarted {}", r.service),
                            Err(e) => format!("restarting {}: {e}", r.service),
                        },
                        None => format!("restarting needs environment `{}`'s file: run `cleanroom top` in its directory", r.env),
                    };
                    next = Instant::now();
                }
            }
            _ => {}
        }
    }
}

fn environments(rows: &[ServiceRow]) -> String {
    let mut envs: Vec<&str> = rows.iter().map(|r| r.env.as_str()).collect();
    envs.dedup();
    match envs.len() {
        1 => "1 environment".into(),
        n => format!("{n} environments"),
    }
}

fn row(r: &ServiceRow) -> Row<'static> {
    let s = r.stats.as_ref();
    let cpu = s
        .and_then(|s| s.cpu_percent)
        .map(|c| format!("{c:.1}"))
        .unwrap_or_else(|| "-".into());
    let mem = s
        .and_then(|s| s.memory_bytes)
        .map(human)
        .unwrap_or_else(|| "-".into());
    let pids = s
        .and_then(|s| s.pids)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "-".into());
    Row::new([
        r.env.clone(),
        r.service.clone(),
        r.info.state.to_string(),
        r.health.clone(),
        cpu,
        mem,
        pids,
    ])
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0}K", b as f64 / 1024.0),
    }
}

/// Every service sandbox of every environment (or of `only`), with stats
/// and health read in parallel.
async fn read_rows(
    backend: Arc<dyn Backend>,
    only: Option<String>,
    plan: Option<&Plan>,
) -> Vec<ServiceRow> {
    let Ok(list) = engine::sandboxes(backend.as_ref(), only.as_deref(), true).await else {
        return Vec::new();
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, info) in list.into_iter().enumerate() {
        let service = engine::service_of(&info).to_string();
        if service == POD_SERVICE {
            continue;
        }
        let env = info.labels.get(ENV_LABEL).cloned().unwrap_or_default();
        let check = plan
            .filter(|p| p.env == env)
            .and_then(|p| p.service(&service))
            .and_then(|s| s.service.healthcheck.clone());
        let backend = backend.clone();
        tasks.spawn(async move {
            let handle = backend.attach(&info.name).await.ok().flatten();
            let running = info.state == SandboxState::Running;
            let stats = match (&handle, running) {
                (Some(h), true) => h.stats().await.ok(),
                _ => None,
            };
            let health = match (&handle, check, running) {
                (Some(h), Some(c), true) => {
                    match cleanroom_env::health::probe(h.as_ref(), h.as_ref(), &c.test, c.timeout)
                        .await
                    {
                        Ok(()) => "healthy".to_string(),
                        Err(out) => format!("unhealthy: {out}"),
                    }
                }
                _ => "-".to_string(),
            };
            (
                i,
                ServiceRow {
                    env,
                    service,
                    info,
                    stats,
                    health,
                },
            )
        });
    }
    let mut rows = Vec::new();
    while let Some(Ok(r)) = tasks.join_next().await {
        rows.push(r);
    }
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}

async fn tail(backend: &dyn Backend, sandbox: &str) -> String {
    match backend.attach(sandbox).await {
        Ok(Some(h)) => cleanroom_env::health::log_text(h.as_ref(), Some(LOG_LINES))
            .await
            .unwrap_or_else(|e| format!("(cannot read the log: {e})")),
        _ => String::new(),
    }
}
