"""Package data (the held-out scene photo list) and where annorm looks for its data sets by
default: the folder $ANNORM_DATA, else ../shared/data from the working directory. Every
command that reads data also takes the path as an option."""
import os
from pathlib import Path

DATA_ROOT = Path(os.environ.get("ANNORM_DATA", "../shared/data"))
CIFAR10 = DATA_ROOT / "cifar10-jpeg.tar.gz"                        # ImageFolder tar: train/ and test/
CIFAR10_TEST_STATS = DATA_ROOT / "cifar10-test-fid-stats.npz"      # FID reference statistics of test/
SCENES = DATA_ROOT / "scenes"                                      # scene photos for inpainting
