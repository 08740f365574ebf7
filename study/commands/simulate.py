"""`camstudy simulate STUDY_DIR --participants N --seed S`: seeded simulated participants (ids SIM-...)."""
from __future__ import annotations

import argparse

DEFAULT_ACCURACY = 0.75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="a built study folder (camstudy build)")
    parser.add_argument("--participants", type=int, required=True, metavar="N", help="how many to simulate")
    parser.add_argument("--seed", type=int, default=0, help="seed of their answers and ids (default 0)")
    parser.add_argument("--accuracy", default=None, metavar="METHOD=P,...",
                        help="accuracy of a typical participant on a typical image, per method "
                             f"(methods not named: {DEFAULT_ACCURACY})")
    parser.add_argument("--participant-sd", type=float, default=0.5,
                        help="SD of participant ability on the logit scale (default 0.5)")
    parser.add_argument("--image-sd", type=float, default=0.5,
                        help="SD of image difficulty on the logit scale (default 0.5)")
    parser.add_argument("--gain-per-round", type=float, default=0.0, metavar="G",
                        help="utility tasks: what each round of learning adds, on the logit scale (default 0); "
                             "--accuracy then gives round 1's accuracy per condition (none= for the control)")


def run(args: argparse.Namespace) -> int:
    from study.commands._common import parse_accuracy
    from study.results.export import method_order
    from study.survey.simulator import simulate_participants
    from study.store.database import open_study

    if args.participants < 1:
        raise ValueError(f"--participants must be at least 1, got {args.participants}")
    methods = method_order(open_study(args.study_dir).config)
    given = parse_accuracy(args.accuracy) if args.accuracy else {}
    unknown = sorted(set(given) - set(methods))
    if unknown:
        raise ValueError(f"--accuracy names {', '.join(unknown)}, not a method of the study ({', '.join(methods)})")
    accuracy = {m: given.get(m, DEFAULT_ACCURACY) for m in methods}
    states = simulate_participants(args.study_dir, args.participants, accuracy, seed=args.seed,
                                   participant_sd=args.participant_sd, image_sd=args.image_sd,
                                   gain_per_round=args.gain_per_round)
    print(f"{len(states)} simulated participants ({states[0].external_id} ... {states[-1].external_id}) "
          f"completed the study in {args.study_dir}; accuracy "
          + ", ".join(f"{m} {p:g}" for m, p in accuracy.items())
          + f"; SDs participant {args.participant_sd:g}, image {args.image_sd:g} (logit scale)"
          + (f"; gain per round {args.gain_per_round:g}" if args.gain_per_round else ""))
    return 0
