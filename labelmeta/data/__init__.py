"""Data: dataset sources (:mod:`.sources`), train / meta / test splits (:mod:`.splits`), resumable loading (:mod:`.loading`);
:mod:`.files` writes torchvision's CIFAR and MNIST formats (small stand-ins, to try a pipeline offline)."""
from .loading import BatchStream, Indexed, IndexedTensorDataset, Loader, cycle, dataset_targets, loader
from .sources import DATASETS, RawData, default_cache_dir
from .splits import Splits, make_splits
from . import user_files  # noqa: F401  (registers the user-file datasets: arrays, table, image-folder, path-list)

__all__ = ["BatchStream", "DATASETS", "Indexed", "IndexedTensorDataset", "Loader", "RawData", "Splits", "cycle",
           "dataset_targets", "default_cache_dir", "loader", "make_splits"]
