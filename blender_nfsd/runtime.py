"""The background work of the add-on (a generate/export job, a backend install, a backend check)
and the timer that connects it to Blender.

Only the main thread touches bpy: a persistent `bpy.app.timers` callback calls `drain()`, which
reads what the backend processes sent, mirrors it into the window manager's properties, reloads
the preview image, imports a finished result and tags the sidebar for redraw. `drain()` is a plain
function so that it can be driven directly (timers do not run in Blender-as-a-module).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import bpy

from . import doctor
from .job import ACTIVE, DONE, FAILED, Job, progress_text
from .process import CommandSequence
from .protocol import CONTROL_EXPORT
from .properties import NFSD_JobState, job_state, present, scene_settings

PREVIEW_IMAGE = "NFSD Preview"
ACTIVE_INTERVAL_S = 0.1  # timer period while something runs
IDLE_INTERVAL_S = 0.5


class Runtime:
    """What is running now. One job, one install and one check at a time."""

    def __init__(self) -> None:
        self.job: Job | None = None
        self.job_imported = False  # the finished job's mesh has been imported
        self.job_reported = False  # the failed job's error has been shown
        self.install: CommandSequence | None = None
        self.check: CommandSequence | None = None
        self.check_model = ""  # the model the check reports on
        self.check_after_install: CommandSequence | None = None

    @property
    def busy(self) -> bool:
        return any(task is not None and task.active for task in (self.job, self.install, self.check))


current = Runtime()


def job_active() -> bool:
    return current.job is not None and current.job.active


def installing() -> bool:
    return current.install is not None


def start_job(job: Job, env: dict[str, str]) -> bool:
    """Start `job` as the current job; False (and the job failed) when it could not start."""
    current.job, current.job_imported, current.job_reported = job, False, False
    started = job.start(env)
    current.job_reported = not started  # the operator reports a failure to start itself
    _mirror_job(job_state(bpy.context), job)
    return started


def control_job(control: str) -> None:
    """The user's Cancel (`stop`) or Stop & Import (`export`) for the current job, shown at once."""
    job = current.job
    if job is None:
        return
    if control == CONTROL_EXPORT:
        job.stop_and_export()
    else:
        job.cancel()
    _mirror_job(job_state(bpy.context), job)


def drain() -> None:
    """One tick of the timer: take in what the background processes sent."""
    wm = present(bpy.context.window_manager, "window manager")
    state = job_state(bpy.context)
    if current.job is not None:
        _drain_job(state, current.job)
    if current.install is not None:
        _drain_install(state, current.install)
    if current.check is not None:
        _drain_check(state, current.check)
    _tag_redraw(wm)


def _drain_job(state: NFSD_JobState, job: Job) -> None:
    for event in job.poll():
        if event.kind == "preview":
            try:
                state.preview_image = show_preview(Path(event["path"])).name
            except RuntimeError as exc:  # an unreadable preview only costs the picture
                print(f"NFSD: cannot show the preview {event['path']}: {exc}")
    _mirror_job(state, job)
    status = job.status
    if status.state == DONE and not current.job_imported:
        current.job_imported = True
        import_finished(job)
    if status.state == FAILED and not current.job_reported:
        current.job_reported = True
        report_error(status.error_message, state.fix_operator, state.fix_label)


def import_finished(job: Job) -> None:
    """Import a finished job's mesh into the current scene, as one undo step."""
    settings = scene_settings(bpy.context)
    settings.last_run_dir = str(job.run_dir)
    settings.last_mesh = job.status.mesh_path
    if not Path(job.status.mesh_path).is_file():
        report_error(f"The backend finished, but its mesh {job.status.mesh_path} is missing.", "", "")
        return
    try:
        # The second argument asks for an undo push: an operator called from a script gets none.
        bpy.ops.nfsd.import_result("EXEC_DEFAULT", True)  # type: ignore[attr-defined]
    except RuntimeError as exc:  # the operator's error report, e.g. an unreadable file
        report_error(str(exc).strip(), "", "")


def _mirror_job(state: NFSD_JobState, job: Job) -> None:
    status = job.status
    state.state = status.state
    state.kind = job.kind
    state.stage = status.stage
    state.message = status.message
    state.step = status.step
    state.total_steps = status.total_steps
    state.progress = status.progress
    state.progress_text = progress_text(status)
    state.loss = status.loss
    state.it_per_s = status.it_per_s
    state.eta_s = status.eta_s
    state.run_dir = status.run_dir
    state.preview_step = status.preview_step
    state.error_message = status.error_message
    state.warning = status.warning
    state.error_log = "\n".join(status.log_tail)
    operator, label = status.fix or ("", "")
    state.fix_operator, state.fix_label = operator, label


def show_preview(path: Path) -> bpy.types.Image:
    """The preview image datablock, pointed at `path` and reloaded (the file is replaced on every
    preview; the datablock is never packed)."""
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = PREVIEW_IMAGE
    elif Path(bpy.path.abspath(image.filepath)) != path:
        image.filepath = str(path)
    image.reload()
    image.preview_ensure().reload()
    return image


def _drain_install(state: NFSD_JobState, install: CommandSequence) -> None:
    install.poll()
    state.install_state, state.install_message = install.state, install.message
    if install.active:
        return
    current.install = None
    if install.state == "failed":
        report_error(install.message, "", "")
    elif current.check_after_install is not None:
        start_check(current.check_after_install, current.check_model)
    current.check_after_install = None


def start_check(check: CommandSequence, model: str) -> None:
    current.check, current.check_model = check, model
    state = job_state(bpy.context)
    state.doctor_state, state.doctor_text = "running", "Checking the backend..."
    check.start()


def _drain_check(state: NFSD_JobState, check: CommandSequence) -> None:
    check.poll()
    state.doctor_state = check.state
    if check.state == "running":
        return
    if check.state == "done":
        try:
            report = doctor.parse_doctor_output(check.output)
        except doctor.DoctorOutputError as exc:
            state.doctor_state, state.doctor_text = "failed", f"Backend check failed: {exc}"
        else:
            state.doctor_text = "\n".join(doctor.summary_lines(report, current.check_model))
    else:
        state.doctor_text = f"Backend check failed: {check.message}"
    current.check = None


def report_error(message: str, fix_operator: str, fix_label: str) -> None:
    """A one-line error for the user: on the console, and in a popup with the fix button when
    Blender has a UI (the panel shows the same message and button)."""
    print(f"NFSD: {message}")
    wm = present(bpy.context.window_manager, "window manager")
    if bpy.app.background or not wm.windows:
        return

    def draw(menu: bpy.types.UIPopupMenu, context: bpy.types.Context) -> None:
        layout = present(menu.layout, "layout")
        layout.label(text=message)
        if fix_operator:
            layout.operator(fix_operator, text=fix_label)

    wm.popup_menu(draw, title="NFSD", icon="ERROR")


def _tag_redraw(wm: bpy.types.WindowManager) -> None:
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                for region in area.regions:
                    if region.type in {"UI", "WINDOW"}:
                        region.tag_redraw()


def timer() -> float:
    """The persistent timer: `drain()`, never letting an exception unregister the timer."""
    try:
        drain()
    except Exception:  # a bug must not stop the job's updates for the rest of the session
        traceback.print_exc()
    return ACTIVE_INTERVAL_S if current.busy else IDLE_INTERVAL_S


def shutdown() -> None:
    """Unregistering or quitting: every backend process ends now."""
    if current.job is not None and current.job.status.state in ACTIVE:
        current.job.shutdown()
    for task in (current.install, current.check):
        if task is not None:
            task.shutdown()
    current.install = current.check = current.check_after_install = None
