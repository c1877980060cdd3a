//! The score page's graph: score (left axis) and offset (right axis) over
//! time, rendered to SVG by plotters so it works without JavaScript.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plotters::prelude::*;

use super::error::AppError;
use crate::control::db::scores::LogEntry;

/// How far back the graph reaches.
pub const WINDOW_SECS: i64 = 7 * 86_400;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 320;

fn plot_err<E: std::fmt::Display>(e: E) -> AppError {
    AppError::Internal(format!("plotting: {e}"))
}

/// How long a rendered graph is reused (also its Cache-Control max-age):
/// monitors report every few minutes, and rendering costs tens of ms.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Past this many cached graphs, expired ones are dropped.
const CACHE_MAX: usize = 1024;

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<String>)>>>;

/// Rendered graphs per server. Each server has its own slot, so a popular
/// graph is rendered once per TTL while other servers' graphs render in
/// parallel.
#[derive(Default)]
pub struct GraphCache {
    slots: Mutex<HashMap<i64, Slot>>,
}

impl GraphCache {
    /// The cached SVG of `server_id`, or `render()`'s, which is then cached.
    pub async fn get_or_render<F, Fut>(
        &self,
        server_id: i64,
        render: F,
    ) -> Result<Arc<String>, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, AppError>>,
    {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| AppError::Internal("graph cache poisoned".into()))?;
            if slots.len() > CACHE_MAX {
                slots.retain(|_, slot| {
                    slot.try_lock().map_or(true, |s| {
                        s.as_ref().is_some_and(|(at, _)| at.elapsed() < CACHE_TTL)
                    })
                });
            }
            slots.entry(server_id).or_default().clone()
        };
        let mut entry = slot.lock().await;
        if let Some((at, svg)) = entry.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(svg.clone());
        }
        let svg = Arc::new(render().await?);
        *entry = Some((Instant::now(), svg.clone()));
        Ok(svg)
    }
}

/// At most this many offset dots: more than the plot has pixels is wasted work.
const MAX_DOTS: usize = 1200;

/// `log` may be in any order. The overall score (rows without a monitor) is
/// the line; when there is none yet, each monitor's score is drawn instead.
pub fn score_svg(log: &[LogEntry]) -> Result<String, AppError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        if log.is_empty() {
            root.draw(&Text::new(
                "No measurements yet",
                (WIDTH as i32 / 2 - 80, HEIGHT as i32 / 2),
                ("sans-serif", 18).into_font().color(&BLACK),
            ))
            .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
            drop(root);
            return Ok(svg);
        }
        let mut entries: Vec<&LogEntry> = log.iter().collect();
        entries.sort_by_key(|e| e.ts);
        let t0 = entries.first().map(|e| e.ts).unwrap_or(0);
        let t1 = entries.last().map(|e| e.ts).unwrap_or(0).max(t0 + 60);
        // Hours before the newest point, so the axis reads "-24 h ... 0".
        let x = |ts: i64| (ts - t1) as f64 / 3600.0;

        let mut offsets_ms: Vec<(f64, f64)> = entries
            .iter()
            .filter_map(|e| {
                e.offset
                    .map(|o| (x(e.ts), (o * 1000.0).clamp(-1000.0, 1000.0)))
            })
            .collect();
        if offsets_ms.len() > MAX_DOTS {
            let every = offsets_ms.len().div_ceil(MAX_DOTS);
            offsets_ms = offsets_ms.into_iter().step_by(every).collect();
        }
        let max_offset = offsets_ms
            .iter()
            .map(|(_, o)| o.abs())
            .fold(10.0f64, f64::max)
            * 1.1;

        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .right_y_label_area_size(50)
            .build_cartesian_2d(x(t0)..0.0, -100.0f64..25.0f64)
            .map_err(plot_err)?
            .set_secondary_coord(x(t0)..0.0, -max_offset..max_offset);
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("score")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        chart
            .configure_secondary_axes()
            .y_desc("offset (ms)")
            .draw()
            .map_err(plot_err)?;

        let overall: Vec<(f64, f64)> = entries
            .iter()
            .filter(|e| e.monitor_id.is_none())
            .map(|e| (x(e.ts), e.score.clamp(-100.0, 25.0)))
            .collect();
        if overall.is_empty() {
            let mut ids: Vec<i64> = entries.iter().filter_map(|e| e.monitor_id).collect();
            ids.sort_unstable();
            ids.dedup();
            for (i, id) in ids.iter().enumerate() {
                let series: Vec<(f64, f64)> = entries
                    .iter()
                    .filter(|e| e.monitor_id == Some(*id))
                    .map(|e| (x(e.ts), e.score.clamp(-100.0, 25.0)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(series, Palette99::pick(i).stroke_width(1)))
                    .map_err(plot_err)?;
            }
        } else {
            chart
                .draw_series(LineSeries::new(overall, BLUE.stroke_width(2)))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(LineSeries::new(
                vec![
                    (x(t0), super::super::db::servers::MIN_DNS_SCORE),
                    (0.0, super::super::db::servers::MIN_DNS_SCORE),
                ],
                RED.mix(0.4).stroke_width(1),
            ))
            .map_err(plot_err)?;
        chart
            .draw_secondary_series(
                offsets_ms
                    .iter()
                    .map(|(t, o)| Circle::new((*t, *o), 2, GREEN.filled())),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
