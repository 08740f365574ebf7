"""`camstudy train-abn`: train an Attention Branch Network and write a checkpoint `load_model("abn")` reads.

The work is done by `study.models.training.train_abn`; this module turns arguments into its call and records in
the checkpoint what a `Classifier` needs (backbone, class names, input size, normalisation).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from study.models.abn import BACKBONES
    parser.add_argument("--images", required=True,
                        help="'digits' (scikit-learn's handwritten digits; 'digits:train' / 'digits:test' its fixed split) or a folder of class folders (ImageFolder)")
    parser.add_argument("--backbone", choices=BACKBONES, default="resnet18", help="network to cut into an ABN")
    parser.add_argument("--pretrained", default=None, metavar="PATH",
                        help="the backbone's state dict to start from (a local file; never downloaded)")
    parser.add_argument("--epochs", type=int, required=True, help="passes over the images")
    parser.add_argument("--size", type=int, default=None,
                        help="input size in pixels (default: 64 for digits, 224 for a folder)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (divided by 10 at 50%% and 75%%)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0, help="same seed, same weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--resume", type=Path, default=None, metavar="CHECKPOINT", help="continue an interrupted run")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file, rewritten after every epoch")


def run(args) -> int:
    from study.images.digits import DIGITS_SIZE
    from study.images.specs import parse_image_set
    from study.models.training import labelled_dataset
    from study.models import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, AttentionBranchNetwork
    from study.models.training import train_abn

    size = args.size or (DIGITS_SIZE if parse_image_set(args.images).in_memory else 224)
    if size < 8:
        raise ValueError(f"--size must be at least 8 pixels, got {size}")
    mean, std = (LITE_MEAN, LITE_STD) if args.backbone == "efficientnet_lite0" else (IMAGENET_MEAN, IMAGENET_STD)
    dataset, classes = labelled_dataset(args.images, size, mean, std)
    net = AttentionBranchNetwork.from_backbone(args.backbone, len(classes), weights=args.pretrained)
    meta = {"categories": classes, "input_size": [size, size], "mean": list(mean), "std": list(std)}
    history = train_abn(net, dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        momentum=args.momentum, weight_decay=args.weight_decay, device=args.device, seed=args.seed,
                        checkpoint=args.out, resume=args.resume, meta=meta, num_workers=args.workers)
    for h in history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}, training accuracy attention {h['attention_accuracy']:.3f} "
              f"perception {h['perception_accuracy']:.3f}")
    print(f"wrote {args.out} ({args.backbone} ABN, {len(classes)} classes, {size}x{size} inputs); "
          f"load it with load_model('abn', weights='{args.out}')")
    return 0
