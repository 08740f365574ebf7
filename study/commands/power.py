"""`camstudy power CONFIG --accuracy m=p,... --participants 10,20,40 --out DIR`: power by simulation."""
from __future__ import annotations

import argparse
from pathlib import Path

from study.results.power import POWER_FILE, POWER_PLOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the planned study's config (TOML)")
    effects = parser.add_mutually_exclusive_group(required=True)
    effects.add_argument("--accuracy", metavar="METHOD=P,...",
                         help="planned accuracy of a typical participant on a typical image, per method of the task")
    effects.add_argument("--pilot", metavar="STUDY_DIR",
                         help="a pilot study folder: accuracies and random-effect SDs are estimated from its answers")
    effects.add_argument("--utility", type=float, metavar="U",
                         help="utility tasks: the utility to detect, (acc_m - acc_none) / acc_none for a typical "
                              "participant on a typical image, with --control-accuracy; --participants then counts "
                              "participants per condition")
    parser.add_argument("--control-accuracy", type=float, default=0.5, metavar="P",
                        help="utility tasks: the control's (none) test accuracy for a typical participant on a "
                             "typical image (default 0.5)")
    parser.add_argument("--participants", default="10,20,40", metavar="N,N,...",
                        help="study sizes to simulate (default 10,20,40)")
    parser.add_argument("--simulations", type=int, default=400, help="simulated studies per size (default 400)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help=f"folder for {POWER_FILE} and {POWER_PLOT}")
    parser.add_argument("--task", default=None,
                        help="task type to plan for (default: the config's first task scored right/wrong)")
    parser.add_argument("--images", type=int, default=None,
                        help="images in the task (default: the task's trials, so everyone sees every image)")
    parser.add_argument("--design", choices=("within", "between"), default=None,
                        help="within: everyone sees every method (Latin square); between: one method each "
                             "(default: the task's design in the config)")
    parser.add_argument("--participant-sd", type=float, default=0.5,
                        help="SD of participant ability, logit scale (default 0.5; ignored with --pilot)")
    parser.add_argument("--image-sd", type=float, default=0.5,
                        help="SD of image difficulty, logit scale (default 0.5; ignored with --pilot)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulations (default 0)")


def run(args: argparse.Namespace) -> int:
    from study.commands._common import parse_accuracy, parse_counts
    from study.protocol.config import load_config
    from study.results.power import PowerPlan, accuracy_task, plan_from_pilot, power_curve

    config = load_config(args.config)
    task = accuracy_task(config, args.task)
    if task.type == "utility" or args.utility is not None:
        return _utility_power(args, task)
    per_participant = task.trials or args.images
    if per_participant is None:
        raise ValueError(f"the config does not say how many images the {task.type} task shows (trials); pass --images N")
    layout = dict(images=args.images or per_participant, per_participant=per_participant,
                  design=args.design or task.design)
    if args.pilot:
        plan = plan_from_pilot(args.pilot, task.type, task.methods, **layout)
    else:
        accuracy = parse_accuracy(args.accuracy)
        if set(accuracy) != set(task.methods):
            raise ValueError(f"--accuracy needs exactly the {task.type} task's methods ({', '.join(task.methods)}), "
                             f"got {', '.join(accuracy)}")
        plan = PowerPlan(task.methods, tuple(accuracy[m] for m in task.methods), args.participant_sd,
                         args.image_sd, **layout)
    power = power_curve(plan, parse_counts(args.participants, "--participants"), args.simulations,
                        alpha=args.alpha, seed=args.seed)
    return _write(args, task, plan, power)


def _utility_power(args: argparse.Namespace, task) -> int:
    """Power to detect `--utility` against the control, by participants per condition."""
    from study.commands._common import parse_counts
    from study.results.power import power_curve, utility_plan

    if task.type != "utility":
        raise ValueError(f"--utility plans a utility task; the {task.type} task takes --accuracy or --pilot "
                         "(name the utility task with --task utility)")
    if args.utility is None or args.utility <= -1 or not 0 < args.control_accuracy < 1 \
            or not 0 < args.control_accuracy * (1 + args.utility) < 1:
        raise ValueError("a utility task is planned with --utility U (> -1) and --control-accuracy P, such that "
                         f"P and P * (1 + U) are between 0 and 1; got U={args.utility}, P={args.control_accuracy}")
    plan = utility_plan(task, args.utility, args.control_accuracy, participant_sd=args.participant_sd,
                        image_sd=args.image_sd, images=args.images)
    per_condition = parse_counts(args.participants, "--participants")
    power = power_curve(plan, [n * len(plan.methods) for n in per_condition], args.simulations,
                        alpha=args.alpha, seed=args.seed)
    power["participants"] = per_condition
    print(f"utility {args.utility:g} of {plan.methods[1]} over none (test accuracy {plan.accuracy[0]:.3f} -> "
          f"{plan.accuracy[1]:.3f}); participants per condition:")
    return _write(args, task, plan, power)


def _write(args: argparse.Namespace, task, plan, power) -> int:
    from study.results.power import power_figure

    args.out.mkdir(parents=True, exist_ok=True)
    power.to_csv(args.out / POWER_FILE, index=False, float_format="%.6g", lineterminator="\n")
    power_figure(power).savefig(args.out / POWER_PLOT, dpi=100, metadata={"Software": None})
    accuracies = ", ".join(f"{m} {p:.3f}" for m, p in zip(plan.methods, plan.accuracy))
    print(f"{task.type} ({plan.design}, {plan.per_participant} of {plan.images} images each; {accuracies}; "
          f"SDs participant {plan.participant_sd:.2f}, image {plan.image_sd:.2f}):")
    print(power.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written: {args.out / POWER_FILE}, {args.out / POWER_PLOT}")
    return 0
