/**
 * Shapes of the nbmlops REST API (/nbmlops/api/). Field names are the contract documented in
 * docs/server-api.md; tests/test_server_api.py checks that both agree with real responses.
 */

export type RunStatus = 'running' | 'finished' | 'failed' | 'cancelled' | 'abandoned';

export interface StoreInfo {
  location: string;
  backend: string;
  revision: string | null;
}

export interface Status {
  ok: boolean;
  code: string | null;
  message: string | null;
  version: string;
  api_version: number;
  store: StoreInfo;
}

export interface RunSummary {
  id: string;
  name: string;
  experiment: string;
  source: string;
  status: RunStatus;
  start_time: number;
  end_time: number | null;
  duration: number | null;
  notebook_path: string | null;
  notebook: string | null;
  parent_run_id: string | null;
  cell_count: number | null;
  params: { [key: string]: string };
  metrics: { [key: string]: number | null };
  tags: { [key: string]: string };
}

export interface RunDetail extends RunSummary {
  notebook_hash: string | null;
  git_commit: string | null;
  git_dirty: boolean | null;
  environment: { [key: string]: unknown };
}

export interface RunPage {
  runs: RunSummary[];
  total: number;
  limit: number;
  offset: number;
}

export interface ArtifactRef {
  id: number;
  uri: string;
  path: string | null;
  kind: string;
  fingerprint: string;
  size: number | null;
  schema: { [key: string]: unknown } | null;
}

export interface Metric {
  key: string;
  value: number | null;
  step: number;
}

export interface Model {
  variable: string;
  class_name: string;
  params: { [key: string]: unknown };
  fitted_on: string[];
}

export interface StaleReason {
  kind: 'variable' | 'file';
  /** redefined | rewritten | changed | changed on disk | deleted */
  how: string;
  name: string | null;
  uri: string | null;
  path: string | null;
  by_seq: number | null;
  by_execution_count: number | null;
}

export interface CellMarks {
  stale: StaleReason[];
  superseded_by: number | null;
}

export interface Cell {
  seq: number;
  cell_id: string | null;
  execution_count: number | null;
  status: string;
  start_time: number;
  duration: number;
  source: string;
  error_name: string | null;
  error_value: string | null;
  vars_defined: string[];
  vars_used: string[];
  params: { [key: string]: string };
  metrics: Metric[];
  reads: ArtifactRef[];
  writes: ArtifactRef[];
  models: Model[];
  stale: StaleReason[];
  superseded_by: number | null;
  validations: Validation[];
}

export interface Violation {
  column: string | null;
  check: string;
  expected: unknown;
  observed: unknown;
}

export interface Validation {
  id: number;
  data_label: string;
  reference_label: string;
  passed: boolean;
  rows: number | null;
  /** failed checks in all; `violations` lists at most 100 */
  violation_count: number;
  violations: Violation[];
  summary: { [key: string]: unknown };
  created_at: number;
}

export interface CellPage {
  run_id: string;
  cells: Cell[];
  last_seq: number;
  /** Marks of every cell of the run by seq; null when nothing changed since `since_seq`. */
  marks: { [seq: string]: CellMarks } | null;
}

export interface NotebookRun {
  notebook: string;
  run: RunSummary | null;
  cells: Cell[];
  last_seq: number;
  marks: { [seq: string]: CellMarks } | null;
  new_run: boolean;
}

export interface LineageNode {
  id: string;
  type: 'artifact' | 'cell' | 'estimator' | 'variable' | string;
  label: string;
  attrs: { [key: string]: unknown };
}

export interface LineageEdge {
  source: string;
  target: string;
  label: string;
}

export interface LineageGraph {
  root: string;
  nodes: LineageNode[];
  edges: LineageEdge[];
}

export interface Comparison {
  runs: RunSummary[];
  params: { [key: string]: (string | null)[] };
  params_differ: string[];
  metrics: { [key: string]: (number | null)[] };
}

export interface ApiError {
  message: string;
  code: string;
  status: number;
}

// -- pipelines ----------------------------------------------------------------------------------

export type StepState =
  | 'pending'
  | 'running'
  | 'ran'
  | 'cached'
  | 'failed'
  | 'cancelled'
  | 'skipped';

export type PipelineRunState =
  | 'starting'
  | 'running'
  | 'finished'
  | 'failed'
  | 'cancelled'
  | 'abandoned';

export interface PipelineStep {
  name: string;
  notebook: string | null;
  depends_on: string[];
  level: number;
}

export interface PipelineParam {
  name: string;
  default: string;
  type: string | null;
  source: 'pipeline' | 'notebook' | string;
  help: string;
  steps: string[];
}

export interface PipelineRunRef {
  id: string;
  status: RunStatus;
  start_time: number;
  end_time: number | null;
}

export interface PipelineInfo {
  name: string;
  path: string;
  kind: 'yaml' | 'notebook' | string;
  ok: boolean;
  error: string | null;
  steps: PipelineStep[];
  params: PipelineParam[];
  latest_run: PipelineRunRef | null;
}

export interface PipelineList {
  pipelines: PipelineInfo[];
  truncated: boolean;
  store_message: string | null;
}

export interface PipelineLaunch {
  run_id: string;
  status: 'starting';
  pipeline: string;
  path: string;
  log: string | null;
}

export interface StepError {
  error_name: string | null;
  error_value: string | null;
  seq: number;
  cell_id: string | null;
  execution_count: number | null;
}

export interface PipelineStepStatus {
  name: string;
  notebook: string | null;
  depends_on: string[];
  level: number;
  state: StepState;
  attempts: number;
  run_id: string | null;
  run_ids: string[];
  start_time: number | null;
  end_time: number | null;
  duration: number | null;
  cached_from: string | null;
  error: StepError | null;
}

export interface LauncherInfo {
  running: boolean;
  exit_code: number | null;
  started: number;
  ended: number | null;
  cancel_requested: boolean;
  log: string | null;
  log_tail: string[] | null;
}

export interface PipelineRunStatus {
  run_id: string;
  pipeline: string | null;
  path: string | null;
  status: PipelineRunState;
  done: boolean;
  run: RunSummary | null;
  steps: PipelineStepStatus[];
  definition_error: string | null;
  launcher: LauncherInfo | null;
}

export interface CancelAnswer {
  run_id: string;
  status: 'cancelling';
}

// -- schedules ----------------------------------------------------------------------------------

/** queued | started | finished | failed | cancelled | abandoned | skipped */
export type FireStatus = string;

export interface ScheduleFire {
  id: number;
  schedule: string;
  status: FireStatus;
  due_at: number | null;
  due: string | null;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  run_id: string | null;
  pid: number | null;
  owner: string | null;
  /** What fired it: `kind` is schedule, change, after or manual (with `by`). */
  reason: { kind?: string; [key: string]: unknown };
  message: string | null;
}

export interface Schedule {
  id: number;
  name: string;
  /** cron (a schedule), change or after (triggers) */
  kind: 'cron' | 'change' | 'after' | string;
  target: string;
  target_path: string | null;
  target_kind: 'pipeline' | 'notebook' | string;
  cron: string | null;
  timezone: string | null;
  watch: string | null;
  watch_path: string | null;
  params: { [key: string]: string };
  overlap: string;
  catchup: string;
  paused: boolean;
  next_fire_at: number | null;
  next_fire: string | null;
  next_fire_local: string | null;
  watched_files: number | null;
  created_at: number;
  updated_at: number;
  last_fire: ScheduleFire | null;
}

export interface SchedulerInfo {
  running: boolean;
  holder: string | null;
  host: string | null;
  pid: number | null;
  expires_at: number | null;
}

export interface ScheduleList {
  schedules: Schedule[];
  scheduler: SchedulerInfo;
}

export interface ScheduleHistory {
  schedule: string;
  fires: ScheduleFire[];
}

export interface FireAnswer {
  fire: number;
  run_id: string;
  status: 'started';
}

// -- models (registry) ----------------------------------------------------------------------------

export interface ModelSummary {
  name: string;
  description: string | null;
  latest_version: number | null;
  version_count: number;
  /** alias -> version */
  aliases: { [alias: string]: number };
  created_at: number;
  updated_at: number;
}

export interface ModelList {
  models: ModelSummary[];
}

/** A promotion gate's decision (an audit event of kind `gate`). */
export interface GateInfo {
  decision: 'promoted' | 'rejected' | string | null;
  metric: string | null;
  alias: string | null;
  candidate_version: number | null;
  candidate_score: number | null;
  champion_version: number | null;
  champion_score: number | null;
  rule: { [key: string]: unknown };
  reasons: string[];
  data_fingerprint: string | null;
  rows: number | null;
}

export interface ModelEventInfo {
  id: number;
  /** register | alias | promote | rollback | unalias | rm | gate */
  kind: string;
  alias: string | null;
  from_version: number | null;
  to_version: number | null;
  reason: string | null;
  user: string | null;
  host: string | null;
  run_id: string | null;
  created_at: number;
  gate: GateInfo | null;
}

export interface ModelVersionInfo {
  version: number;
  uri: string;
  model_class: string | null;
  format: string;
  size: number | null;
  digest: string;
  status: string;
  run_id: string | null;
  cell_seq: number | null;
  source_path: string | null;
  signature: { [key: string]: unknown };
  aliases: string[];
  created_at: number;
  created_by: string | null;
  gate: GateInfo | null;
}

export interface ModelDetail extends ModelSummary {
  versions: ModelVersionInfo[];
  events: ModelEventInfo[];
  events_truncated: boolean;
}

export interface ModelChange {
  name: string;
  alias: string;
  version: number | null;
  changed: boolean;
  event: ModelEventInfo | null;
  aliases: { [alias: string]: number };
}

// -- Monitoring (GET monitoring, GET monitoring/{name}) ------------------------------------------

export interface ServiceRoute {
  /** the alias served ("" when served by explicit version) */
  alias: string;
  version: number | null;
  /** primary (answers) or shadow (scored and logged, not returned) */
  role: string;
  weight: number | null;
}

export interface ServiceInfo {
  host: string | null;
  pid: number | null;
  port: number | null;
  url: string | null;
  started_at: number | null;
  updated_at: number | null;
  /** its heartbeat was rewritten in the last 10 s */
  alive: boolean;
  routes: ServiceRoute[];
  requests: number;
  errors: number;
  log: { written: number | null; dropped: number | null; pending: number | null } | null;
}

export interface MonitorSummary {
  id: number;
  created_at: number;
  alias: string | null;
  version: number | null;
  source: string | null;
  window: string | null;
  rows: number | null;
  score: number | null;
  drifted: boolean;
  threshold: number | null;
}

export interface DriftResult extends MonitorSummary {
  /** feature name -> PSI (only the features listed in DriftHistory.features) */
  features: { [feature: string]: number | null };
  drifted_features: string[];
  prediction_psi: number | null;
}

export interface ServedModel {
  name: string;
  alive: boolean;
  services: ServiceInfo[];
  requests: number;
  errors: number;
  logged: boolean;
  last_request_at: number | null;
  rows_last_hour: number;
  requests_last_hour: number;
  monitor: MonitorSummary | null;
}

export interface MonitoringList {
  models: ServedModel[];
  predictions_dir: string | null;
  now: number;
}

export interface RatePoint {
  t: number;
  requests: number;
  rows: number;
  /** requests per minute in this bucket */
  rate: number;
}

export interface RateSeries {
  alias: string;
  version: number | null;
  role: string;
  requests: number;
  rows: number;
  points: RatePoint[];
}

export interface DriftHistory {
  features: string[];
  results: DriftResult[];
  truncated: boolean;
  features_truncated: boolean;
}

export interface DriftTrigger {
  name: string;
  watch: string | null;
  target: string;
  /** the target relative to the server root (null: outside it) */
  target_path: string | null;
  paused: boolean;
  threshold: number | null;
  window: string | number | null;
  min_rows: number | null;
  episode: { [key: string]: unknown } | null;
  last_fire: ScheduleFire | null;
}

export interface MonitoringDetail {
  name: string;
  minutes: number;
  since: number;
  until: number;
  now: number;
  bucket_seconds: number;
  services: ServiceInfo[];
  rows: number;
  series: RateSeries[];
  drift: DriftHistory;
  triggers: DriftTrigger[];
  fires: ScheduleFire[];
}
