"""Fashion-MNIST's class names and the names of its four IDX files (`idx.py` reads the files).

No torch here: params and the `download` stage read the names.
"""

# The four IDX files, by split: (images, labels). `download.files` must name these.
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
