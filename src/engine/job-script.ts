import { ExecutionPlan, isInside, PlanExecutor } from './execution-plan';
import { TASK_LABEL } from './docker-options';
import { JOB_LABEL, jobContainerName } from './job-layout';
import { DEFAULT_PATH, TASK_ROOT_VARIABLE } from './process-runtime';

// A plan rendered as the bash script a Pulsar job (or `tesp runner`) runs: `bash ../inputs/tesp/job.sh` from
// <job>/working, in a clean environment. It follows the job directory contract of job-layout.ts. Every value of the
// plan reaches the script through shellQuote only, so no argv, env value, path or image is ever read as shell code.
//
// The task's own stdout/stderr files (an executor's stdout: /out/log) get the same bytes as metadata/tesp/<i>.stdout
// while the executor runs, through a tee onto a descriptor the script opened before it started: the file is checked
// and opened once, so a symbolic link planted later cannot redirect it, and one file named for both streams gets
// both interleaved through one shared offset, as the local engine writes it.

export interface JobScriptOptions {
  /** The Pulsar job id: names the containers (jobContainerName) and labels them (JOB_LABEL). */
  jobId: string;
  /** docker: `docker run` per executor; apptainer: `apptainer exec` of the image (on HPC nodes); process: plain. */
  runtime: ScriptRuntime;
  /** Give containers the default network; otherwise they run with --network none. */
  allowNetwork?: boolean;
  /** The Apptainer (or Singularity) command, for the apptainer runtime; default `apptainer`. */
  apptainerCommand?: string;
  /** docker: run executors as the image's user even when root, with Docker's default capabilities. */
  runAsRoot?: boolean;
  /** docker: uid[:gid] for images whose USER is root or unset; empty: the host's user when not root, else nobody. */
  executorUser?: string;
}

export type ScriptRuntime = 'docker' | 'apptainer' | 'process';

/** One word for bash: single quotes, each ' as '\''. Newlines and every other byte stay literal inside them. */
export function shellQuote(value: string): string {
  // A NUL cannot be part of an argument or a path; bash would silently drop it and run something else.
  if (value.includes('\0')) throw new Error('a shell word cannot hold a NUL character');
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const words = (values: readonly string[]) => values.map(shellQuote).join(' ');

/** The job script of a plan: pure, no I/O. */
export function renderScript(plan: ExecutionPlan, options: JobScriptOptions): string {
  const writable = plan.mounts.filter((m) => !m.readOnly && m.type === 'DIRECTORY').map((m) => m.path);
  // Nested writable mounts are covered by the outer one: listing both would list their files twice.
  const writableRoots = [...new Set(writable)].filter((dir, _, all) => !all.some((other) => other !== dir && isInside(dir, other)));
  const mountDirs = [...new Set(plan.mounts.map((m) => (m.type === 'DIRECTORY' ? m.path : parentOf(m.path))))];
  const lines = [
    '#!/usr/bin/env bash',
    '# A TES task run as a Pulsar job: rendered by tesp (src/engine/job-script.ts) for the job directory contract of',
    '# src/engine/job-layout.ts. Runs from <job>/working; exits 0 once it ran to its end (exit codes are in progress).',
    'set -u',
    'set -o pipefail',
    `task_id=${shellQuote(plan.taskId)}`,
    `job_id=${shellQuote(options.jobId)}`,
    `runtime=${shellQuote(options.runtime)}`,
    `mount_dirs=(${words(mountDirs)})`,
    `writable_mounts=(${words(writableRoots)})`,
    `executor_count=${plan.executors.length}`,
    '',
    ...plan.executors.flatMap((executor, position) => executorDefinition(plan, executor, position, options)),
    COMMON_BODY,
    ...runtimeBody(options.runtime),
    MAIN_BODY,
  ];
  return lines.join('\n');
}

/** `executor_<i>`: sets what run_executor needs to run the executor at position i of the plan. */
function executorDefinition(plan: ExecutionPlan, executor: PlanExecutor, position: number, options: JobScriptOptions): string[] {
  if (executor.command.length === 0) throw new Error(`executor ${executor.index} has no command`);
  const streams = [
    `  stdin_path=${shellQuote(executor.stdin ?? '')}`,
    `  stdout_path=${shellQuote(executor.stdout ?? '')}`,
    `  stderr_path=${shellQuote(executor.stderr ?? '')}`,
    `  ignore_error=${executor.ignoreError ? 1 : 0}`,
  ];
  const body =
    options.runtime === 'docker' ? [`  container=${shellQuote(jobContainerName(options.jobId, position))}`, `  cmd=(${dockerRunWords(plan, executor, position, options).join(' ')})`]
    : options.runtime === 'apptainer' ? [`  workdir=''`, `  cmd=(${apptainerWords(plan, executor, options).join(' ')})`]
    : [`  workdir=${shellQuote(executor.workdir ?? '')}`, `  cmd=(${processWords(executor).join(' ')})`];
  return [`executor_${position}() {`, ...body, ...streams, '}', ''];
}

/** `docker run` for one executor, as docker-options.ts maps a plan (the image keeps its entrypoint). */
function dockerRunWords(plan: ExecutionPlan, executor: PlanExecutor, position: number, options: JobScriptOptions): string[] {
  const out = ['docker', 'run', '--rm', '--name', shellQuote(jobContainerName(options.jobId, position))];
  out.push('--label', shellQuote(`${JOB_LABEL}=${options.jobId}`), '--label', shellQuote(`${TASK_LABEL}=${plan.taskId}`));
  if (!options.allowNetwork) out.push('--network', 'none');
  // As docker-options.ts: no new privileges; a non-root user (chosen on the host, executor_user) without capabilities.
  out.push('--security-opt', 'no-new-privileges');
  if (!options.runAsRoot) out.push('--cap-drop', 'ALL', '--user', `"$(executor_user ${shellQuote(executor.image)} ${shellQuote(options.executorUser ?? '')})"`);
  if (executor.stdin !== undefined) out.push('-i');
  if (executor.workdir) out.push('-w', shellQuote(executor.workdir));
  for (const [name, value] of Object.entries(executor.env)) out.push('-e', shellQuote(`${name}=${value}`));
  // "$R" is the task root on this host, known only when the script runs.
  for (const mount of plan.mounts) out.push('-v', `"$R"${shellQuote(`${mount.path}:${mount.path}${mount.readOnly ? ':ro' : ''}`)}`);
  const { cpuCores, ramBytes, shmBytes } = plan.limits;
  if (isPositive(cpuCores)) out.push(`--cpus=${cpuCores}`);
  // Swap equal to memory: the RAM limit is not stretched by swapping.
  if (isPositive(ramBytes)) out.push(`--memory=${Math.round(ramBytes)}`, `--memory-swap=${Math.round(ramBytes)}`);
  if (isPositive(shmBytes)) out.push(`--shm-size=${Math.round(shmBytes)}`);
  // `--` ends docker's options, so an image or command cannot be read as one.
  out.push('--', shellQuote(executor.image), ...executor.command.map(shellQuote));
  return out;
}

/**
 * `apptainer exec` for one executor: the image from its registry (docker://), the task's mounts bound at their
 * container paths, a clean environment and its own /tmp and HOME (--containall). CPU and memory limits are left to
 * Slurm, which enforces them where the cluster has cgroups.
 */
function apptainerWords(plan: ExecutionPlan, executor: PlanExecutor, options: JobScriptOptions): string[] {
  const out = [shellQuote(options.apptainerCommand ?? 'apptainer'), 'exec', '--containall', '--cleanenv'];
  if (!options.allowNetwork) out.push('--net', '--network', 'none');
  if (executor.workdir) out.push('--pwd', shellQuote(executor.workdir));
  for (const [name, value] of Object.entries(executor.env)) out.push('--env', shellQuote(`${name}=${value}`));
  for (const mount of plan.mounts) out.push('--bind', `"$R"${shellQuote(`${mount.path}:${mount.path}${mount.readOnly ? ':ro' : ''}`)}`);
  out.push(shellQuote(apptainerImage(executor.image)), ...executor.command.map(shellQuote));
  return out;
}

/** A TES image (a Docker reference) as Apptainer names it; a URI or a .sif path is taken as it is. */
export function apptainerImage(image: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//.test(image) || image.startsWith('/') || image.endsWith('.sif') ? image : `docker://${image}`;
}

/** The process runtime's command: exactly the environment process-runtime.ts gives, argv executed as it is. */
function processWords(executor: PlanExecutor): string[] {
  const env = [shellQuote(`PATH=${DEFAULT_PATH}`), '"HOME=$R"', ...Object.entries(executor.env).map(([name, value]) => shellQuote(`${name}=${value}`))];
  env.push(`"${TASK_ROOT_VARIABLE}=$R"`);
  // env takes every leading NAME=VALUE word as a variable, so a command whose name holds '=' goes through exec.
  const command = executor.command[0].includes('=') ? ['/bin/sh', '-c', 'exec "$@"', 'sh', ...executor.command] : executor.command;
  return ['env', '-i', ...env, ...command.map(shellQuote)];
}

function isPositive(value: number | undefined): value is number {
  return value !== undefined && Number.isFinite(value) && value > 0;
}

function parentOf(containerPath: string): string {
  const cut = containerPath.replace(/\/+$/, '').lastIndexOf('/');
  return cut <= 0 ? '/' : containerPath.slice(0, cut);
}

/** Bash text in a template literal, which cannot hold "${": there, bash's "${" is written "$\{". */
function bashText(strings: TemplateStringsArray): string {
  return strings.raw.join('').replaceAll('$\\{', '${');
}

// The script's fixed part. It reads the variables and executor_<i> functions above and nothing else of the plan.
const COMMON_BODY = bashText`
# The job directory from the script's cwd (<job>/working); the "x" keeps a trailing newline of a name.
JOB=$(cd .. && pwd -P && printf x) || exit 1
JOB=$\{JOB%$'\nx'}
R=$JOB/working/root
M=$JOB/metadata/tesp
mkdir -p -- "$R" "$M" || exit 1

now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# One line in progress, its fields tab-separated. Without progress the job says nothing: then the script is broken.
progress() {
  local IFS=$'\t'
  printf '%s\n' "$*" >>"$M/progress" || exit 1
}

note() {
  printf '%s\n' "$1" >>"$M/notes" || exit 1
}

# Inputs: hard links where the file system allows (no second copy of big inputs), copies otherwise.
if [ -d "$JOB/inputs/root" ]; then
  if ! cp -al -- "$JOB/inputs/root/." "$R/" 2>/dev/null; then
    cp -a --remove-destination -- "$JOB/inputs/root/." "$R/" || exit 1
  fi
fi
for dir in $\{mount_dirs[@]+"$\{mount_dirs[@]}"}; do
  mkdir -p -- "$R$dir" || exit 1
done

running_pid=''
running_container=''
tee_pids=''
pipes=()
`;

function runtimeBody(runtime: ScriptRuntime): string[] {
  switch (runtime) {
    case 'docker':
      return [CONTAINER_RESOLVE, DOCKER_LAUNCH];
    case 'apptainer':
      return [CONTAINER_RESOLVE, PROCESS_GROUP_LAUNCH];
    case 'process':
      return [PROCESS_RESOLVE, PROCESS_GROUP_LAUNCH];
  }
}

// Containers (Docker, Apptainer): container paths are resolved as the container sees them, an absolute link target
// starting again at the task root (a link /out/x -> /in/x finds the input under $R/in/x), ".." stopping at the root.
const CONTAINER_RESOLVE = bashText`
# Sets host to where container path $1 is under $R, following symbolic links as the container would. Fails when a
# link is unreadable or there are more than 40 of them; with $2 = existing, also when the path does not exist.
resolve() {
  local rest=$\{1#/} part target links=0
  host=$R
  while [ -n "$rest" ]; do
    part=$\{rest%%/*}
    if [ "$part" = "$rest" ]; then rest=''; else rest=$\{rest#*/}; fi
    case $part in
      '' | .) continue ;;
      ..) [ "$host" = "$R" ] || host=$\{host%/*}; continue ;;
    esac
    if [ -L "$host/$part" ]; then
      links=$((links + 1))
      [ "$links" -le 40 ] || return 1
      target=$(readlink -- "$host/$part" && printf x) || return 1
      target=$\{target%$'\nx'}
      case $target in
        /*) host=$R; rest=$\{target#/}/$rest ;;
        *) rest=$target/$rest ;;
      esac
    else
      host=$host/$part
    fi
  done
  [ "$\{2:-}" != existing ] || [ -e "$host" ]
}
`;

const DOCKER_LAUNCH = bashText`
# Executors may run as another uid than the script: writable mounts are open to every uid, the task root closed to
# other users of the host (containers reach the mounts without passing through it).
chmod 0700 -- "$R" || exit 1
for dir in $\{writable_mounts[@]+"$\{writable_mounts[@]}"}; do
  chmod 0777 -- "$R$dir" || exit 1
done

# The user an executor of image $1 runs as (docker-options.ts executorUser): the image's USER unless it is root,
# else $2, else this host's user when it is not root, else nobody.
executor_user() {
  local user
  docker image inspect -- "$1" >/dev/null 2>&1 || docker pull -q -- "$1" >/dev/null 2>&1
  user=$(docker image inspect --format '{{.Config.User}}' -- "$1" 2>/dev/null)
  case $\{user%%:*} in
    '' | 0 | root)
      if [ -n "$2" ]; then user=$2
      elif [ "$(id -u)" != 0 ]; then user=$(id -u):$(id -g)
      else user=65534:65534
      fi ;;
  esac
  printf '%s' "$user"
}

launch() {
  docker rm -f "$container" >/dev/null 2>&1 # a leftover of an interrupted earlier run
  running_container=$container
  "$\{cmd[@]}" <"$in_host" >&7 2>&8 7>&- 8>&- 3>&- 4>&- &
  running_pid=$!
}

finish() {
  running_pid=''
  running_container=''
}

stop_running() {
  [ -z "$running_container" ] || docker rm -f "$running_container" >/dev/null 2>&1
  if [ -n "$running_pid" ]; then
    kill -TERM "$running_pid" 2>/dev/null
    wait "$running_pid" 2>/dev/null
  fi
  # The container may have been created while the client was stopped.
  [ -z "$running_container" ] || docker rm -f "$running_container" >/dev/null 2>&1
}
`;

// Processes: paths are host paths, so the host resolves them; they must stay inside the task root.
const PROCESS_RESOLVE = bashText`
resolve() {
  local flag=-m
  [ "$\{2:-}" != existing ] || flag=-e
  host=$(realpath "$flag" -- "$R$1" && printf x) || return 1
  host=$\{host%$'\nx'}
  case $host in
    "$R" | "$R"/*) return 0 ;;
  esac
  return 1
}
`;

// Plain processes and Apptainer (whose container is a process tree of this script):
const PROCESS_GROUP_LAUNCH = bashText`
# setsid gives the executor a process group of its own (it stays this script's child), so a stop, and the end of
# the executor, reach what it started too, as in the local process runtime.
launch() {
  local dir=$R$workdir
  (mkdir -p -- "$dir" && cd -- "$dir" && exec setsid "$\{cmd[@]}") <"$in_host" >&7 2>&8 7>&- 8>&- 3>&- 4>&- &
  running_pid=$!
}

finish() {
  # What the executor left running in the background ends with it (and releases its stdout).
  kill -KILL -- "-$running_pid" 2>/dev/null
  running_pid=''
}

stop_running() {
  [ -z "$running_pid" ] || kill -KILL -- "-$running_pid" "$running_pid" 2>/dev/null
}
`;

const MAIN_BODY = bashText`
on_signal() {
  trap '' TERM INT HUP
  stop_running
  exit 143
}
trap on_signal TERM INT HUP

refuse() {
  printf 'tesp: %s %s leads outside the task; not opened\n' "$1" "$2" >>"$err_file" || exit 1
}

# Opens fd $1 (7: stdout, 8: stderr) for the executor: the metadata file $2, or, when the task names a file of its own
# (fd $3 is open on it), a fifo read by a tee into both.
open_stream() {
  local target=$2
  if [ -n "$3" ]; then
    target=$M/.$i.$1.pipe
    rm -f -- "$target" && mkfifo -- "$target" || exit 1
    pipes+=("$target")
  fi
  # A fifo opened read-write: the open does not wait for a reader, and the tee sees the end once the executor has
  # closed its copy and this one is closed too.
  case $1 in
    7) exec 7<>"$target" || exit 1 ;;
    8) exec 8<>"$target" || exit 1 ;;
  esac
  if [ -n "$3" ]; then
    tee -- "$2" <"$target" >&"$3" 3>&- 4>&- 7>&- 8>&- &
    tee_pids="$tee_pids $!"
  fi
}

# Runs executor_$1: start and exit lines in progress, its whole stdout and stderr in $M/<i>.stdout|.stderr and in
# the task's own stdout/stderr files. Returns its exit code.
run_executor() {
  local i=$1 out_file=$M/$1.stdout err_file=$M/$1.stderr code=0 in_host=/dev/null out_host='' err_host='' pid
  "executor_$i"
  : >"$out_file" && : >"$err_file" || exit 1
  progress start "$i" "$(now)"
  if [ -n "$stdin_path" ]; then
    if resolve "$stdin_path"; then in_host=$host; else refuse stdin "$stdin_path"; code=1; fi
  fi
  if [ -n "$stdout_path" ]; then
    if resolve "$stdout_path"; then out_host=$host; else refuse stdout "$stdout_path"; code=1; fi
  fi
  if [ -n "$stderr_path" ]; then
    if resolve "$stderr_path"; then err_host=$host; else refuse stderr "$stderr_path"; code=1; fi
  fi
  # Opened once, before the executor starts: what a link planted later points to is never written.
  if [ "$code" -eq 0 ] && [ -n "$out_host" ]; then
    { exec 3>"$out_host"; } 2>>"$err_file" || code=1
  fi
  if [ "$code" -eq 0 ] && [ -n "$err_host" ]; then
    if [ "$err_host" = "$out_host" ]; then
      exec 4>&3 # one file for both streams: one offset, the streams interleaved
    else
      { exec 4>"$err_host"; } 2>>"$err_file" || code=1
    fi
  fi
  if [ "$code" -eq 0 ]; then
    tee_pids=''
    pipes=()
    open_stream 7 "$out_file" "$\{out_host:+3}"
    open_stream 8 "$err_file" "$\{err_host:+4}"
    launch
    pid=$running_pid
    wait "$pid"
    code=$?
    finish
    exec 7>&- 8>&-
    # shellcheck disable=SC2086 # pids, split on purpose
    [ -z "$tee_pids" ] || wait $tee_pids
    rm -f -- $\{pipes[@]+"$\{pipes[@]}"}
  fi
  exec 3>&- 4>&-
  progress exit "$i" "$(now)" "$code"
  return "$code"
}

i=0
while [ "$i" -lt "$executor_count" ]; do
  run_executor "$i"
  code=$?
  [ "$code" -eq 0 ] || [ "$ignore_error" = 1 ] || break
  i=$((i + 1))
done

# No output download may reach a host file through a symbolic link the task made: a link to a file inside the task
# becomes that file (a hard link, or a copy across file systems); any other link is removed.
for mount in $\{writable_mounts[@]+"$\{writable_mounts[@]}"}; do
  [ -e "$R$mount" ] || [ -L "$R$mount" ] || continue
  while IFS= read -r -d '' link; do
    shown=$\{link#"$R"}
    if resolve "$shown" existing && [ -f "$host" ]; then
      copy=$link.tesp-$$
      if ln -T -- "$host" "$copy" 2>/dev/null || { copy=$(mktemp -- "$link.XXXXXX") && cp -p -- "$host" "$copy"; }; then
        mv -fT -- "$copy" "$link" && continue
      fi
      rm -f -- "$copy"
    fi
    rm -f -- "$link" || exit 1
    note "outputs: $shown is a symbolic link that leads outside the task; removed"
  done < <(find "$R$mount" -type l -print0)
done

# What outputs may name: every regular file under the writable mounts, "<size>\t<path below the root>\0".
: >"$M/files.part" || exit 1
for mount in $\{writable_mounts[@]+"$\{writable_mounts[@]}"}; do
  # A mount reached through a link (a process executor can replace a directory) is not listed.
  if ! resolve "$mount" existing || [ "$host" != "$R$mount" ] || [ ! -d "$host" ]; then
    [ ! -e "$R$mount" ] || note "outputs: $mount is not a directory inside the task; its files are not listed"
    continue
  fi
  # find goes on past what it cannot read (a directory a container made unreadable); that is noted, not fatal.
  (cd -- "$R" && find ".$mount" -type f -printf '%s\t%p\0') | sed -z 's|\t\./|\t|' >>"$M/files.part"
  listed=("$\{PIPESTATUS[@]}")
  [ "$\{listed[1]}" -eq 0 ] || exit 1
  [ "$\{listed[0]}" -eq 0 ] || note "outputs: some files under $mount could not be listed"
done
mv -f -- "$M/files.part" "$M/files" || exit 1

progress end "$(now)"
exit 0
`;
