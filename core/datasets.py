"""The one dataset loader: a local path or a Hub id in, a `datasets.Dataset` with undecoded images out.

    load_table("demo-output/curated", "train")          # folder of parquet/json/jsonl/csv/arrow files
    load_table("demo-output/demo-data", "eval")         # a `save_to_disk` folder (DatasetDict or Dataset)
    load_table("data/vqa.jsonl")                        # one data file
    load_table("flaviagiammarino/vqa-rad", "test")      # a Hub id (not an existing local path)
    load_local("runs/missing", "train")                 # ValueError naming the path: never falls back to the Hub

Image columns stay undecoded (`{"bytes", "path"}` dicts): decoding happens later, per sample, where a corrupt image
can be counted and named instead of breaking iteration. `streaming=True` returns an `IterableDataset` for Hub ids
and data files (a `save_to_disk` folder is memory-mapped anyway).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["as_image_list", "load_hub", "load_local", "load_table", "undecoded_images"]

_TABLE_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}


def undecoded_images(dataset, columns=None):
    """`dataset` with its `Image` / list-of-`Image` columns (only `columns`, if given) set to `decode=False`."""
    import datasets  # heavy (pyarrow, pandas): imported when a dataset is actually touched

    for name, feature in (dataset.features or {}).items():  # streamed datasets may not know their features
        if columns is not None and name not in columns:
            continue
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif (isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(feature.feature, datasets.Image)
              and feature.feature.decode):
            dataset = dataset.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return dataset


def as_image_list(dataset, column: str = "images", *, decode: bool = False):
    """Cast `column` to a list of images whatever it holds now (paths, `{bytes, path}` structs, images); undecoded
    unless `decode` (e.g. for TRL's generation, which wants PIL images)."""
    import datasets  # heavy: see `undecoded_images`

    return dataset.cast_column(column, datasets.List(datasets.Image(decode=decode)))


def load_hub(hub_id: str, config: str | None = None, split: str = "train", *, streaming: bool = False):
    """`datasets.load_dataset(hub_id, config, split=split)` with undecoded images."""
    import datasets  # heavy: see `undecoded_images`

    return undecoded_images(datasets.load_dataset(hub_id, config, split=split, streaming=streaming))


def _split_files(files: list[Path], split: str | None) -> list[Path]:
    """The files of `split` (named `<split>-*`, `<split>.*` or under `<split>/`), or all files when none matches."""
    if split is None:
        return files
    matching = [f for f in files if f.name.startswith((f"{split}-", f"{split}.")) or f.parent.name == split]
    return matching or files


def load_local(path: str | os.PathLike, split: str | None = None, *, config: str | None = None,
               streaming: bool = False):
    """A `save_to_disk` folder, a folder of data files (`config` may name a subfolder) or one data file.

    The files of a folder are listed explicitly rather than passed as `load_dataset(folder)`, which can return a
    stale cached copy of an earlier folder of the same name (seen with datasets 5.2); the file builders key their
    cache on each file's path and modification time.
    """
    import datasets  # heavy: see `undecoded_images`

    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"Dataset path {str(path)!r} does not exist. Create the demo data with `infimed demo-data "
                         f"--output {path}` or point the config at your data.")
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} holds splits {list(loaded)}; pass one of them as `split`, got {split!r}.")
            loaded = loaded[split]
        return undecoded_images(loaded)
    if path.is_dir():
        root = path / config if config and (path / config).is_dir() else path
        files = _split_files(sorted(f for f in root.rglob("*") if f.suffix in _TABLE_SUFFIXES and f.is_file()), split)
        if len({f.suffix for f in files}) > 1 and any(f.suffix == ".parquet" for f in files):
            # `infimed curate` writes parquet shards next to its JSON report: the shards are the data
            files = [f for f in files if f.suffix == ".parquet"]
        if not files:
            raise ValueError(f"{root} is neither a `save_to_disk` folder nor a folder of parquet/json/jsonl/csv/arrow "
                             "files; point it at the output of `infimed curate` or `infimed demo-data`.")
    else:
        files = [path]
    builders = {_TABLE_SUFFIXES.get(f.suffix) for f in files}
    if len(builders) != 1 or None in builders:
        raise ValueError(f"Mixed or unsupported data files under {path}: {[f.name for f in files][:5]}; use a "
                         "`save_to_disk` folder or .parquet, .json/.jsonl, .csv or .arrow files of one kind.")
    loaded = datasets.load_dataset(builders.pop(), data_files=[str(f) for f in files], split="train",
                                   streaming=streaming)
    return undecoded_images(loaded)


def load_table(source: str | os.PathLike, split: str | None = None, *, config: str | None = None,
               streaming: bool = False):
    """`load_local` when `source` is an existing path, else `load_hub` (`split` defaults to `train` there)."""
    if Path(source).expanduser().exists():
        return load_local(source, split, config=config, streaming=streaming)
    return load_hub(str(source), config, split or "train", streaming=streaming)
