"""Amortised refinement: teach the conditioning network what the perceptual refinement finds.

The perceptual refinement (`sie3d.refine`) costs seconds per avatar. Here it is run once, offline, over
many people and emotion sentences, and the conditioning network is fine-tuned on what it found, so that the
fast path (`sie3d generate` without ``--refine``) predicts perceptually corrected coefficients itself:

    python -m sie3d.semantics.amortize collect     # refine people x sentences (resumable; cached)
    python -m sie3d.semantics.amortize train       # fine-tune -> semantics/conditioning_amortized.pt

People: every shared photo except the evaluation's (the London Set, `AmortizeConfig.held_out_prefix`), so
`sie3d eval` judges the amortised network on people it never saw. Sentences: the corpus's training
sentences for the seven basic emotions (plain words and paraphrases; never the evaluation's prompt files),
drawn per person with the seed. Fine-tuning starts from the shipped network and keeps training on the
corpus too (each batch mixes corpus examples with refined ones), so the text abilities are kept; the
report holds the corpus metrics of the fine-tuned network next to the shipped one's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sie3d.head.names import ICT_NAMES
from sie3d.semantics import corpus as corpus_module
from sie3d.semantics.corpus import CorpusConfig

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
AMORTIZED_WEIGHTS = PACKAGE_DIR / "conditioning_amortized.pt"
AMORTIZED_ASSET = "conditioning_amortized"


@dataclass(frozen=True)
class AmortizeConfig:
    seed: int = 0
    sentences_per_person: int = 8  # basic-emotion training sentences refined per person
    held_out_prefix: str = "london_"  # photos of the evaluation's people: never refined, never trained on
    epochs: int = 3  # over the corpus's training split, continuing from the shipped network
    batch_size: int = 256
    refined_per_batch: int = 64  # refined examples added to every corpus batch
    refined_weight: float = 1.0  # their loss weight (the corpus examples weigh 1)
    lr: float = 3e-4
    threads: int = 2


def basic_sentences(corpus) -> list[str]:
    """The corpus's training sentences (plain words and paraphrases) that ask for one basic emotion (or neutral)."""
    from sie3d.semantics.train import _basic_concept_rows

    rows = np.flatnonzero((corpus.split == "train") & np.isin(corpus.category, ("plain", "paraphrase")))
    rows = rows[_basic_concept_rows(corpus, rows)]
    return sorted({corpus.texts[r] for r in rows})


def training_photos(faces: Path, config: AmortizeConfig) -> list[Path]:
    return sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                  and not p.name.startswith(config.held_out_prefix))  # fmt: skip


def _cache_path(config: AmortizeConfig, faces: Path) -> Path:
    from sie3d.semantics.train import cache_folder

    settings = {k: v for k, v in dataclasses.asdict(config).items() if k in ("seed", "sentences_per_person",
                                                                              "held_out_prefix")}  # fmt: skip
    from sie3d.refine import RefineConfig

    settings["refine"] = RefineConfig().to_json()  # another refinement finds other targets
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    key.update((PACKAGE_DIR / "conditioning.pt").read_bytes())  # ... and so does another text reading
    key.update("\n".join(p.name for p in training_photos(faces, config)).encode())
    return cache_folder() / f"refined-{key.hexdigest()[:16]}.npz"


def collect(faces: Path, config: AmortizeConfig = AmortizeConfig(), progress: bool = True) -> dict[str, np.ndarray]:
    """Refine `sentences_per_person` basic-emotion sentences on every non-held-out shared photo; the results
    (text, person features, refined coefficients, the text's emotion distribution, the reading before
    refinement, whether the refinement changed it) are cached after every person, so a stopped run resumes."""
    from sie3d.avatar import Models, ReconstructConfig, person_features, reconstruct, text_variants
    from sie3d.errors import NoFaceError, PhotoError
    from sie3d.hair.config import HairConfig
    from sie3d.photo import load_photo
    from sie3d.refine import RefineConfig

    torch.set_num_threads(config.threads)
    path = _cache_path(config, faces)
    rows: dict[str, list] = {k: [] for k in ("photo", "text", "features", "refined", "read", "emotion", "changed")}
    if path.is_file():
        data = np.load(path)
        rows = {k: list(data[k]) for k in rows}
    sentences = basic_sentences(corpus_module.generate(CorpusConfig()))
    rng = np.random.default_rng(config.seed)
    photos = training_photos(faces, config)
    picks = {p.name: [sentences[i] for i in rng.choice(len(sentences), config.sentences_per_person, replace=False)]
             for p in photos}  # fmt: skip
    done = set(rows["photo"])
    with Models.load() as models:
        for photo in tqdm(photos, desc="refining people x sentences", unit="photo", disable=not progress):
            if photo.name in done:
                continue
            try:
                # the bare head, as the shipped amortised network was made (the hair is on by default since)
                person = reconstruct(load_photo(photo), models, ReconstructConfig(hair=HairConfig(enabled=False)))
            except (NoFaceError, PhotoError) as exc:
                log.info("%s: %s", photo.name, exc.message)
                continue
            features = person_features(person)
            for variant in text_variants(person, models, picks[photo.name], refine=RefineConfig()):
                reading, refinement = variant.info["text"], variant.info["refinement"]
                rows["photo"].append(photo.name)
                rows["text"].append(reading["text"])
                rows["features"].append(features)
                rows["refined"].append(variant.coefficients)
                rows["read"].append(np.array([reading["blendshapes"][n] for n in ICT_NAMES], np.float32))
                rows["emotion"].append(np.array(list(reading["emotions"].values()), np.float32))
                rows["changed"].append(refinement["chosen_step"] > 0)
            partial = path.with_suffix(".partial.npz")
            np.savez(partial, **{k: np.array(v) for k, v in rows.items()})
            partial.replace(path)
    return {k: np.array(v) for k, v in rows.items()}


def fine_tune(refined: dict[str, np.ndarray], faces: Path, config: AmortizeConfig = AmortizeConfig(),
              progress: bool = True):  # fmt: skip
    """The shipped conditioning network, trained further on the corpus mixed with the refined examples.
    Returns (network, report, corpus, real people): what `sie3d.semantics.train.save` needs."""
    from sie3d.semantics import train
    from sie3d.semantics.interpret import load_network

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    corpus = corpus_module.generate(CorpusConfig())
    embeddings = train.embed(corpus.texts, progress)
    words = train.corpus_words(corpus.texts)
    real = train.real_people(faces, progress)
    people = real.concat(train.synthetic_people(real, train.TrainConfig().synthetic_people, train.TrainConfig().seed))
    texts = [str(t) for t in refined["text"]]
    refined_emb = train.embed(texts, progress)
    refined_words = train.corpus_words(texts)
    features = torch.from_numpy(refined["features"].astype(np.float32))
    targets = torch.from_numpy(refined["refined"].astype(np.float32))
    emotions = torch.from_numpy(refined["emotion"].astype(np.float32))

    model, _ = load_network()
    before = train.evaluate(model, corpus, embeddings, real, words)
    train_rows = np.flatnonzero(corpus.split == "train")
    steps = config.epochs * math.ceil(len(train_rows) / config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    bar = tqdm(total=steps, desc="fine-tuning on refined targets", unit="step", disable=not progress)
    model.train()
    for _ in range(config.epochs):
        order = rng.permutation(train_rows)
        for begin in range(0, len(order), config.batch_size):
            rows = order[begin : begin + config.batch_size]
            terms = train.corpus_loss(model, corpus, embeddings, words, people, rows, rng)
            pick = torch.from_numpy(rng.integers(len(texts), size=config.refined_per_batch))
            out_r = model(torch.from_numpy(refined_emb)[pick], features[pick], refined_words.select(pick))
            terms_r = model.loss(out_r, features[pick], targets[pick], emotions[pick], torch.ones(len(pick)))
            loss = terms["total"] + config.refined_weight * terms_r["total"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update()
            bar.set_postfix_str(f"corpus {terms['total'].item():.4f} refined {terms_r['total'].item():.4f}",
                                refresh=False)  # fmt: skip
    bar.close()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(refined_emb), features, refined_words).coefficients
        read = torch.from_numpy(refined["read"].astype(np.float32))
    report = {
        "metrics_before": before, "metrics": train.evaluate(model, corpus, embeddings, real, words),
        "refined_examples": len(texts), "people": int(len(set(refined["photo"].tolist()))),
        "changed_by_refinement": float(np.mean(refined["changed"])),
        "refined_mae": {"shipped_reading": float((read - targets).abs().mean()),
                        "amortized": float((pred - targets).abs().mean())},
        "config": dataclasses.asdict(config), "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    return model, report, corpus, real


def main(argv: list[str] | None = None) -> int:
    from sie3d.photo import shared_faces_dir
    from sie3d.semantics.train import save

    parser = argparse.ArgumentParser(prog="python -m sie3d.semantics.amortize", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["collect", "train", "all"])
    parser.add_argument("--sentences", type=int, default=AmortizeConfig.sentences_per_person,
                        help="sentences refined per person")
    parser.add_argument("--faces", help="folder of photos (default: the shared faces)")
    parser.add_argument("--threads", type=int, default=AmortizeConfig.threads, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    faces = Path(args.faces) if args.faces else shared_faces_dir()
    if faces is None:
        parser.error("no shared faces folder found: pass --faces DIR (or set SIE3D_FACES)")
    config = AmortizeConfig(sentences_per_person=args.sentences, threads=args.threads)
    refined = collect(faces, config)
    print(f"{len(refined['text'])} refined examples from {len(set(refined['photo'].tolist()))} people; the "
          f"refinement changed {100 * np.mean(refined['changed']):.0f}% of them")
    if args.step == "collect":
        return 0
    model, report, corpus, real = fine_tune(refined, faces, config)
    save(model, corpus, config, report, real, AMORTIZED_WEIGHTS, asset=AMORTIZED_ASSET)
    print(json.dumps({k: report[k] for k in ("refined_mae", "refined_examples", "people")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
