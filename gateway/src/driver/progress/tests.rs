use super::*;

fn job(id: i64, done: i64, tasks: i64, stages_done: i64, stages: usize) -> JobData {
    JobData {
        job_id: id,
        job_group: Some("g".into()),
        status: "RUNNING".into(),
        num_tasks: tasks,
        num_active_tasks: 2.min(tasks - done),
        num_completed_tasks: done,
        stage_ids: (0..stages as i64).collect(),
        num_completed_stages: stages_done,
        ..Default::default()
    }
}

/// Superset's three regexes (db_engine_specs/hive.py), and its progress formula.
fn superset_progress(lines: &[String]) -> i64 {
    let mut total_jobs = 1i64;
    let mut current_job = 1i64;
    let mut stages: Vec<(i64, f64)> = Vec::new();
    for line in lines {
        assert!(line.contains("INFO"), "{line}");
        if let Some(rest) = line.split("Launching Job ").nth(1) {
            let mut parts = rest.split(" out of ");
            current_job = parts.next().unwrap().trim().parse().unwrap();
            total_jobs = parts.next().unwrap().trim().parse().unwrap();
            stages.clear();
        }
        if let Some(rest) = line.split("Stage-").nth(1) {
            let number: i64 = rest.split(' ').next().unwrap().parse().unwrap();
            let map: f64 = rest
                .split("map = ")
                .nth(1)
                .unwrap()
                .split('%')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let reduce: f64 = rest
                .split("reduce = ")
                .nth(1)
                .unwrap()
                .split('%')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            stages.retain(|(n, _)| *n != number);
            stages.push((number, (map + reduce) / 2.0));
        }
    }
    let stage: f64 = if stages.is_empty() {
        0.0
    } else {
        stages.iter().map(|(_, p)| p).sum::<f64>() / stages.len() as f64
    };
    (100.0 * (current_job - 1) as f64 / total_jobs as f64 + stage / total_jobs as f64) as i64
}

#[test]
fn log_lines_climb_as_superset_reads_them() {
    let mut log = ProgressLog::default();
    let mut seen = Vec::new();
    seen.extend(log.lines("http://ui", &[job(7, 0, 40, 0, 2)]));
    assert_eq!(seen[0], "INFO  : Launching Job 1 out of 1");
    assert_eq!(seen[1], "INFO  : Tracking URL = http://ui/jobs/job/?id=7");
    let first = superset_progress(&seen);
    seen.extend(log.lines("http://ui", &[job(7, 20, 40, 1, 2)]));
    let middle = superset_progress(&seen);
    assert!(middle > first, "{first} -> {middle}");
    // 50 % of the tasks; stages: one of two done, the other counted at 50 %: 75 %.
    assert_eq!(middle, 62, "(50 + 75) / 2");
    seen.extend(log.lines("http://ui", &[job(7, 40, 40, 2, 2)]));
    assert_eq!(superset_progress(&seen), 100);
    // Nothing changed: nothing written (PyHive reads the log until a batch is empty).
    assert!(log.lines("http://ui", &[job(7, 40, 40, 2, 2)]).is_empty());
    assert!(!log.due(Duration::from_secs(60)));
    // A second job is Job 2; its tracking URL is not repeated.
    let next = log.lines("http://ui", &[job(9, 0, 10, 0, 1)]);
    assert_eq!(next[0], "INFO  : Launching Job 2 out of 2");
    assert!(!next.iter().any(|l| l.contains("Tracking URL")));
    assert!(next[1].starts_with("INFO  : Stage-2 map = 0%"));
}

#[test]
fn beelines_update_has_nine_columns_and_a_fraction() {
    let mut log = ProgressLog::default();
    let update = log.update(&[job(3, 10, 40, 0, 1)], 1234);
    assert_eq!(update.header_names.len(), 9);
    assert_eq!(update.rows.len(), 1);
    assert_eq!(update.rows[0].len(), 9);
    assert_eq!(update.rows[0][0], "Job 1");
    assert_eq!(update.rows[0][3], "40");
    assert_eq!(update.rows[0][4], "10");
    assert_eq!(update.progressed_percentage.into_inner(), 0.25);
    assert_eq!(update.start_time, 1234);
    // The first job done, a second running at 50%: 75% of the jobs seen.
    let update = log.update(&[job(4, 5, 10, 0, 1)], 1234);
    assert_eq!(update.progressed_percentage.into_inner(), 0.75);
    assert_eq!(update.footer_summary, "JOBS: 01/02");
}

#[test]
fn jobs_parse_from_the_rest_api_and_only_the_group_counts() {
    let json = r#"[{"jobId":0,"name":"x","stageIds":[0,1],"jobGroup":"968ada50-0a6e-411b-935d-d3d154682e73",
        "status":"RUNNING","numTasks":2,"numActiveTasks":2,"numCompletedTasks":0,"numSkippedTasks":0,
        "numFailedTasks":0,"numKilledTasks":0,"numCompletedIndices":0,"numActiveStages":1,
        "numCompletedStages":0,"numSkippedStages":0,"numFailedStages":0,"killedTasksSummary":{}}]"#;
    let jobs: Vec<JobData> = serde_json::from_str(json).unwrap();
    assert_eq!(
        jobs[0].job_group.as_deref(),
        Some("968ada50-0a6e-411b-935d-d3d154682e73")
    );
    assert_eq!(jobs[0].stage_ids, vec![0, 1]);
    assert_eq!(
        group_of(&[
            0x96, 0x8a, 0xda, 0x50, 0x0a, 0x6e, 0x41, 0x1b, 0x93, 0x5d, 0xd3, 0xd1, 0x54, 0x68,
            0x2e, 0x73
        ])
        .as_deref(),
        Some("968ada50-0a6e-411b-935d-d3d154682e73")
    );
    assert_eq!(group_of(&[1, 2, 3]), None);
}
