"""`camstudy build`: a study config -> a study folder (study.toml, stimuli/, database).

The build renders every map the task types ask for once (maps are shared between tasks and
rebuilds: a PNG is named after what it shows), then writes the whole study version (images,
stimuli, trial templates, the Latin-square layout) in one transaction, so a failed build
leaves nothing half-written behind. Participants' plans are drawn later, when they enter.

Rebuilding is safe: the same config is a no-op; a changed config makes a new study version,
but only with `force_new=True` once the current version has answers.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from study.images.items import composite
from study.images.sets import image_set
from study.images.specs import resolve_path
from study.protocol import plans, tasks
from study.protocol.config import CONFIG_FILE, StudyConfig, load_config
from study.protocol.languages import names_in, read_class_names
from study.protocol.messages import speaker
from study.protocol.tasks.spec import specs_to_json
from study.store.database import (SCHEMA_VERSION, Database, Event, Image, Model, Participant, Response, Stimulus,
                                  Study, Trial, open_database)

STIMULI_DIR = "stimuli"


class Renderer(Protocol):
    """What the build needs from models and explainers (a fake one keeps tests torch-free)."""

    def categories(self, model: str) -> list[str]: ...

    def predict(self, model: str, items: Sequence[Any]) -> dict[str, list[tuple[int, float]]]: ...

    def class_scores(self, model: str, items: Sequence[Any], classes: Sequence[int]) -> dict[str, list[float]]:
        """Per image, the model's logits of `classes` (in that order): decisions among a few classes."""

    def render(self, items: Sequence[Any], requests: Sequence[tasks.MapRequest]) -> list[list[Any]]:
        """Per request, one PIL image per target. The requests share model, method, `joint` and
        number of targets, so they can go through the explainer as one batch."""

    def examples(self, items: Sequence[Any], requests: Sequence[tasks.ExampleRequest]) -> list[list[Any]]:
        """Per request, [one PIL image]: the image beside its most helpful training images. The
        requests share model, method, training set, k and l2."""


class ExplainerRenderer:
    """The real renderer: study.load_model + study.explainers.explain + study.stimuli.render.

    `weights` names a weights file per model (the config's `[weights]`); `root` is the folder that
    relative training-image folders are taken in (the config's)."""

    def __init__(self, device: str | None = None, seed: int = 0, weights: dict[str, Path] | None = None,
                 root: Path | None = None):
        self.device, self.seed, self.weights, self.root = device, seed, dict(weights or {}), root
        self._models, self._pools = {}, {}

    def _model(self, name: str):
        if name not in self._models:
            from study.models import load_model
            self._models[name] = load_model(name, weights=self.weights.get(name), device=self.device)
        return self._models[name]

    def examples(self, items: Sequence[Any], requests: Sequence[tasks.ExampleRequest]) -> list[list[Any]]:
        from study.stimuli.example_pictures import TrainingPool, example_pictures
        first = requests[0]
        model = self._model(first.model)
        key = (first.model, first.train_images)
        if key not in self._pools:
            self._pools[key] = TrainingPool.load(first.train_images, self.root, model)
        return example_pictures(model, self._pools[key], items, requests)

    def categories(self, model: str) -> list[str]:
        return list(self._model(model).categories)

    def predict(self, model: str, items: Sequence[Any]) -> dict[str, list[tuple[int, float]]]:
        import torch
        net = self._model(model)
        with torch.no_grad():
            probs = torch.softmax(net(net.preprocess([i.image for i in items])), dim=1)
        top = probs.topk(min(5, probs.shape[1]), dim=1)   # top-5, or every class of a smaller model
        return {item.image_id: [(int(c), float(p)) for c, p in zip(top.indices[k], top.values[k])]
                for k, item in enumerate(items)}

    def class_scores(self, model: str, items: Sequence[Any], classes: Sequence[int]) -> dict[str, list[float]]:
        import torch
        net = self._model(model)
        scores = []
        with torch.no_grad():
            for start in range(0, len(items), 64):
                chunk = items[start:start + 64]
                scores += net(net.preprocess([i.image for i in chunk]))[:, list(classes)].float().cpu().tolist()
        return {item.image_id: row for item, row in zip(items, scores)}

    def render(self, items: Sequence[Any], requests: Sequence[tasks.MapRequest]) -> list[list[Any]]:
        import torch
        from study.explainers import explain, resolve_method
        from study.stimuli.render import picture
        first = requests[0]
        net = self._model(first.model)
        x = net.preprocess([item.image for item in items])
        targets = torch.tensor([list(r.targets) for r in requests], device=x.device)
        # Guided maps stay signed RGB and are shown on their own, as in the Grad-CAM paper
        # (study.stimuli.render.picture); the others are heatmaps over the photo.
        guided = resolve_method(first.method).guided
        options = {"reduce": "none"} if guided else {}
        maps = explain(first.method, net, x, targets, seed=self.seed, normalize=not (first.joint or guided),
                       **options).detach().cpu()
        pictures = []
        for item, item_maps in zip(items, maps):
            if first.joint:   # HIVE: the top-k maps share one scale, so their strengths compare
                item_maps = item_maps / item_maps.abs().max().clamp_min(1e-12)
            display = display_copy(item.image)
            pictures.append([picture(display, m) for m in item_maps])
        return pictures


DISPLAY_SIZE = 448    # longest side of a stimulus PNG


def display_copy(image):
    """The photo at the size stimuli are shown (longest side DISPLAY_SIZE, never enlarged)."""
    display = image.convert("RGB")
    display.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE))
    return display


@dataclass
class _Plan:
    """Everything the build writes, before it touches the database."""
    items: dict[str, Any]
    stimuli: dict[tuple, tuple[str, int | None, tasks.MapRequest]]   # key -> path, target, request
    trials: list[dict[str, Any]]     # "spec" holds {language: TrialSpec}
    layout: list[dict[str, Any]]


def build_study(config_path: str | Path, out_dir: str | Path, force_new: bool = False,
                progress: bool = True, *, renderer: Renderer | None = None,
                items: Sequence[Any] | None = None, combine: Callable | None = None) -> int:
    """Build (or reuse) the study of `config_path` in `out_dir`; returns the study version's id.

    `renderer`, `items` and `combine` default to the real explainers, the config's image set and
    `study.images.composite`; passing them builds a study from other maps or images. A task that
    names its own `images` draws its units from that set instead (the examples task on a model
    trained on the digits, say), and its model predicts only the images it is shown.
    """
    config = load_config(config_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    database = open_database(config.database(out))
    current = _current_study(database)
    weights = weights_digests(config)
    if current is not None:
        changed = _changed_weights(current["weights"], weights)
        if current["hash"] == config.hash and not changed and not force_new:
            if not (out / CONFIG_FILE).is_file():  # a server database shared by two study folders
                raise ValueError(f"the database {config.database_url} already holds this study, built into another "
                                 "folder; copy that folder here, or build with --force-new for a new study version")
            return current["id"]
        if current["answers"] and not force_new:
            what = (f"the weights file of {', '.join(changed)} changed since it was built" if changed
                    else "its config changed")
            raise ValueError(f"the study in {out} already has {current['answers']} answers and {what}; "
                             "rebuild with --force-new to start a new study version")
    if items is None:
        items = image_set(config.images, config.root)
    combine = combine or composite
    sets = {config.images: items}
    for task in config.tasks:
        if task.images is not None and task.images not in sets:
            sets[task.images] = image_set(task.images, config.root)
    for spec, held in sets.items():
        if not held:
            raise ValueError(f"image set {spec!r} holds no images")
    task_items = [sets[task.images or config.images] for task in config.tasks]
    renderer = renderer or ExplainerRenderer(seed=config.seed, root=config.root,
                                             weights={m: config.resolve(w) for m, w in config.weights.items()})
    categories = {m: renderer.categories(m) for m in config.models}
    predictions: tasks.Predictions = {m: {} for m in config.models}
    for task, held in zip(config.tasks, task_items):
        _predict(renderer, predictions, tasks.TASKS[task.type].models(task), held)
    # asked only by tasks that decide among a few classes (utility), so a renderer for other tasks may lack it
    plan = _plan(config, task_items, predictions, categories, combine,
                 lambda model, items, classes: renderer.class_scores(model, items, classes))
    # Composites made by the plan are recorded with predictions too.
    _predict(renderer, predictions, config.models, [i for i in plan.items.values() if not _known(predictions, i)])
    _render(plan, out, renderer, progress)
    # The text that was validated and hashed, not the file as it is now (it may have changed).
    (out / CONFIG_FILE).write_text(config.source, encoding="utf-8")
    _keep_class_names(config, out)
    return database.write(lambda session: _write(session, config, plan, predictions, categories, weights))


def _keep_class_names(config: StudyConfig, out: Path) -> None:
    """Copy each language's class-name CSV into the study folder, at the path the config names: the
    survey reads the folder's own config, so the example on its instructions page names its class
    as the trials do even where the study folder is served from another machine."""
    for relative in config.class_names.values():
        kept = resolve_path(relative, out)
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(config.resolve(relative).read_bytes())


def weights_digests(config: StudyConfig) -> dict[str, str]:
    """sha256 of each `[weights]` file: the stimuli depend on the weights as much as on the config, and
    a retrained checkpoint saved over the old one leaves the config (and its hash) as it was."""
    digests = {}
    for model, relative in sorted(config.weights.items()):
        path = config.resolve(relative)
        if not path.is_file():
            raise FileNotFoundError(f"weights file of {model!r} not found: {path}")
        with path.open("rb") as f:
            digests[model] = hashlib.file_digest(f, "sha256").hexdigest()
    return digests


def _changed_weights(built: dict[str, str] | None, now: dict[str, str]) -> list[str]:
    """Models whose weights file differs from the one the current version was built from (none known for
    a version built before the digests were recorded)."""
    if built is None:
        return []
    return [model for model in sorted(set(built) | set(now)) if built.get(model) != now.get(model)]


def _current_study(database: Database) -> dict[str, Any] | None:
    with database.read() as session:
        study = session.scalars(select(Study).order_by(Study.id.desc())).first()
        if study is None:
            return None
        answers = session.scalar(select(func.count(Response.id)).join(Participant)
                                 .where(Participant.study_id == study.id))
        built = session.scalars(select(Event.detail).where(Event.study_id == study.id, Event.kind == "built")
                                .order_by(Event.id.desc())).first()
        return {"id": study.id, "hash": study.config_hash, "answers": answers,
                "weights": (built or {}).get("weights")}


def _predict(renderer: Renderer, predictions: tasks.Predictions, models: Sequence[str], items: Sequence[Any]) -> None:
    """Add the top-5 predictions of `models` for those of `items` they lack (each image predicted once)."""
    for model in models:
        todo = [i for i in items if i.image_id not in predictions[model]]
        if todo:
            predictions[model].update(renderer.predict(model, todo))


def _known(predictions: tasks.Predictions, item: Any) -> bool:
    return any(item.image_id in by_image for by_image in predictions.values())


def _file_name(request: tasks.MapRequest | tasks.ExampleRequest | tasks.PhotoRequest, target: int | None) -> str:
    parts = [request.image_id, request.method] if target is None else [
        request.image_id, request.model, request.method, str(target), *request.name_parts()]
    return re.sub(r"[^A-Za-z0-9_.+\-]", "_", "__".join(parts)) + ".png"


def _plan(config: StudyConfig, task_items: Sequence[Sequence[Any]], predictions: tasks.Predictions,
          categories: dict[str, list[str]], combine: Callable, class_scores: Callable) -> _Plan:
    """Units, cells, practice and attention trials of every task (from its own image set), and the maps they need."""
    rng = random.Random(config.seed)
    plan = _Plan(items={i.image_id: i for held in task_items for i in held}, stimuli={}, trials=[], layout=[])
    extras = _extra_trials(config)
    wording = _Wording(config, categories)
    ctx = tasks.UnitContext(predictions, categories, class_scores, combine, rng)

    def stimulus_ids(requests) -> list[tuple]:
        keys = []
        for request in requests:
            for target in request.targets:
                key = (request, target)
                plan.stimuli.setdefault(key, (f"{STIMULI_DIR}/{_file_name(request, target)}", target, request))
                keys.append(key)
        return keys

    def trial(position, task, kind, unit, cond, role, cell_index, specs=None):
        if unit.item is not None:
            plan.items.setdefault(unit.image_id, unit.item)
        plan.trials.append({
            "task": task.type, "role": role, "task_position": position, "cell_index": cell_index,
            "image_id": unit.image_id, "model": cond.model, "model_b": cond.model_b,
            "method": cond.method, "method_b": cond.method_b, "target_class": kind.target(unit, cond),
            "stimulus_keys": stimulus_ids(kind.maps(task, unit, cond)),
            "spec": specs or wording.specs(kind, task, unit, cond)})

    for position, (task, items) in enumerate(zip(config.tasks, task_items)):
        kind = tasks.TASKS[task.type]
        units = kind.units(task, items, ctx)
        reserved = 1 if extras[position] else 0
        main_units = units[: len(units) - reserved]
        if not main_units:
            raise ValueError(f"task {position + 1} ({task.type}): the image set {task.images or config.images!r} gives "
                             f"{len(units)} usable images, too few for this task"
                             + (" and its practice/attention trials" if reserved else ""))
        conditions = kind.conditions(task)
        per_participant = task.trials or len(main_units)
        if per_participant > len(main_units):
            raise ValueError(f"task {position + 1} ({task.type}): trials = {per_participant} but only "
                             f"{len(main_units)} usable images; a participant never sees an image twice in a task")
        plan.layout.append({"task": task.type, "units": len(main_units), "conditions": len(conditions),
                            "per_participant": per_participant, **kind.layout(task, main_units)})
        for j in range(len(main_units) * len(conditions)):
            u, c = plans.cell(j, len(main_units), len(conditions))
            trial(position, task, kind, main_units[u], conditions[c], "main", j)
        for n, role in enumerate(extras[position]):
            # Between subjects, each condition gets its own copy of a practice or attention trial (the
            # plan keeps the participant's), so no one practises on a method they are not assigned.
            for cond in _extra_conditions(task, conditions, n):
                specs = wording.specs(kind, task, units[-1], cond)
                if role == "attention":
                    specs = wording.attention_checks(specs, rng)
                trial(position, task, kind, units[-1], cond, role, n, specs)
    return plan


def _extra_conditions(task, conditions: list[tasks.Condition], n: int) -> list[tasks.Condition]:
    """The condition(s) of the n-th practice or attention trial of a task: one, cycling through the
    conditions (within subjects), or the n-th of each method's conditions (between subjects)."""
    if task.design == "within":
        return [conditions[n % len(conditions)]]
    by_method = [[c for c in conditions if c.method == m] for m in task.methods]
    return [own[n % len(own)] for own in by_method]


class _Wording:
    """A trial's spec in each of the study's languages: the task plugin's wording from the
    message catalogue, class names from the language's CSV where the config gives one."""

    def __init__(self, config: StudyConfig, categories: dict[str, list[str]]):
        overrides = {lang: read_class_names(config.resolve(path)) for lang, path in config.class_names.items()}
        self.languages = config.languages
        self.say = {lang: speaker(lang) for lang in self.languages}
        self.names = {(model, lang): names_in(names, overrides.get(lang, {}))
                      for model, names in categories.items() for lang in self.languages}

    def specs(self, kind: tasks.TaskType, task, unit: tasks.Unit, cond: tasks.Condition) -> dict[str, tasks.TrialSpec]:
        return {lang: kind.spec(task, unit, cond, self.names[cond.model, lang], say=self.say[lang])
                for lang in self.languages}

    def attention_checks(self, specs: dict[str, tasks.TrialSpec], rng: random.Random) -> dict[str, tasks.TrialSpec]:
        """Every language's check asks for the same option: each draws from the same rng state."""
        state, checks = rng.getstate(), {}
        for lang, spec in specs.items():
            rng.setstate(state)
            checks[lang] = spec.as_attention_check(rng, self.say[lang])
        return checks


def _extra_trials(config: StudyConfig) -> list[list[str]]:
    """Practice trials cycle over all tasks, attention checks over those that can host one."""
    extras: list[list[str]] = [[] for _ in config.tasks]
    practice = [i for i, t in enumerate(config.tasks) if tasks.TASKS[t.type].hosts_practice]
    for n in range(config.practice_trials):
        extras[practice[n % len(practice)]].append("practice")
    hosts = [i for i, t in enumerate(config.tasks) if tasks.TASKS[t.type].hosts_attention_checks]
    for n in range(config.attention_checks):
        extras[hosts[n % len(hosts)]].append("attention")
    return extras


def _render(plan: _Plan, out: Path, renderer: Renderer, progress: bool, batch_size: int = 8,
            example_batch_size: int = 256) -> None:
    """Render every picture once, batching requests that can share an explainer call.

    Example pictures go in larger batches: each batch scores its images against the whole training
    set, whose features and Hessian are the same every time."""
    from tqdm import tqdm
    (out / STIMULI_DIR).mkdir(exist_ok=True)
    groups: dict[tuple, list[tasks.MapRequest | tasks.ExampleRequest]] = {}
    for request, _target in plan.stimuli:
        group = groups.setdefault(request.batch_key(), [])
        if request not in group:
            group.append(request)
    with tqdm(total=sum(map(len, groups.values())), desc="rendering stimuli", unit="image",
              disable=not progress) as bar:
        for group in groups.values():
            examples = isinstance(group[0], tasks.ExampleRequest)
            size = example_batch_size if examples else batch_size
            for start in range(0, len(group), size):
                chunk = group[start:start + size]
                draw = (renderer.examples if examples else _photos if isinstance(chunk[0], tasks.PhotoRequest)
                        else renderer.render)
                pictures = draw([plan.items[r.image_id] for r in chunk], chunk)
                for request, per_target in zip(chunk, pictures):
                    for target, picture in zip(request.targets, per_target):
                        picture.save(out / STIMULI_DIR / _file_name(request, target))
                bar.update(len(chunk))


def _photos(items: Sequence[Any], requests: Sequence[tasks.PhotoRequest]) -> list[list[Any]]:
    """The photos themselves (no model needed), at the size the maps are shown."""
    return [[display_copy(item.image)] for item in items]


def _write(session, config: StudyConfig, plan: _Plan, predictions: dict[str, dict], categories: dict[str, list[str]],
           weights: dict[str, str]) -> int:
    study = Study(name=config.name, config_hash=config.hash, config_toml=config.source,
                  schema_version=SCHEMA_VERSION, seed=config.seed, layout=plan.layout)
    session.add(study)
    session.flush()
    for model in config.models:
        names = categories[model]
        session.add(Model(study_id=study.id, name=model, n_classes=len(names), categories=names))
    image_rows = {}
    for image_id, item in plan.items.items():
        row = Image(study_id=study.id, image_id=image_id, source=str(item.source),
                    width=item.image.width, height=item.image.height, labels=list(item.labels),
                    boxes=[list(b) for b in item.boxes],
                    predictions={m: by_image[image_id] for m, by_image in predictions.items() if image_id in by_image})
        session.add(row)
        image_rows[image_id] = row
    session.flush()
    stimulus_ids = {}
    for key, (path, target, request) in plan.stimuli.items():
        row = Stimulus(study_id=study.id, image_ref=image_rows[request.image_id].id, model=request.model,
                       method=request.method, target_class=target, path=path,
                       meta=request.meta())
        session.add(row)
        stimulus_ids[key] = row
    session.flush()
    for trial in plan.trials:
        fields = {k: v for k, v in trial.items() if k != "stimulus_keys"}
        ids = [stimulus_ids[k].id for k in trial["stimulus_keys"]]
        fields["spec"] = specs_to_json({lang: spec.with_stimuli(ids) for lang, spec in trial["spec"].items()},
                                       config.language)
        session.add(Trial(study_id=study.id, **fields))
    session.add(Event(study_id=study.id, kind="built", detail={"config_hash": config.hash,
                                                                 "n_trials": len(plan.trials),
                                                                 "n_stimuli": len(plan.stimuli),
                                                                 "weights": weights}))
    session.flush()
    return study.id
