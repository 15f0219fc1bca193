"""What nettrain has built in, by name, with the one line `nettrain list` prints about each: plain text, read
without importing torch (`nettrain list` starts in 0.2 s, not the 1.7 s of torch's import). The registries that
build them (registry.py) take each one's line from here; tests/test_startup.py checks that the two name the same."""

DATASETS = {
    "breast-cancer": "scikit-learn's bundled table: 569 tumours, 30 features, malignant/benign (seeded 80/20 split)",
    "cifar10": "CIFAR-10, 32x32 color, 50,000 + 10,000 (DATA/cifar-10-batches-py or DATA/cifar10/*.npz)",
    "cifar100": "CIFAR-100, 32x32 color, 100 classes (DATA/cifar-100-python)",
    "csv": "your table: --data-dir table.csv --target COLUMN (numbers standardized, text one-hot, missing cells "
           "filled; 80/20 split)",
    "diabetes": "scikit-learn's bundled table: 442 patients, 10 features, disease progression (R^2) (seeded 80/20 "
                "split)",
    "digits": "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download)",
    "fashion-mnist": "Fashion-MNIST clothing, 28x28 gray, 60,000 + 10,000 (DATA/FashionMNIST/raw)",
    "imagefolder": "your photos: DATA/train/<class>/*.jpg|png|bmp|webp, and DATA/val or DATA/test",
    "iris": "scikit-learn's bundled table: 150 iris flowers, 4 measurements, 3 species (seeded 80/20 split)",
    "mnist": "MNIST handwritten digits, 28x28 gray, 60,000 + 10,000 (DATA/MNIST/raw/*.gz)",
    "npz": "your arrays: DATA/train.npz (+ test.npz) with images (uint8 NHWC/NHW), labels, classes",
    "quadratic": "the tutorial's regression: y = x^2 + 0.2*U(0,1), 100 points in [-1, 1] (MSE)",
    "text": "labelled texts: --data-dir FILE (.csv, .tsv, .jsonl) with text and label columns, or a folder of class "
            "folders of .txt files",
    "two-gaussians": "the tutorial's two classes of 100 points around (2, 2) and (-2, -2)",
    "wine": "scikit-learn's bundled table: 178 wines, 13 chemical measurements, 3 cultivars (seeded 80/20 split)",
}
MODELS = {
    "bilstm": "text: embedding, bidirectional LSTM (padding-exact), max pooling; args: embed, hidden, layers, pool "
              "(max|mean|both), dropout",
    "cnn": "small BatchNorm CNN (32-64-128 channels, global max-pool); the fast default",
    "fastcnn": "small CNN for MNIST-sized images: 3x conv 3x3, max-pool before BatchNorm + ReLU (32-64-128); the "
               "mnist-fast recipe",
    "fastnet": "airbench-style CIFAR net: data-whitened 2x2 stem, 3 conv-BN blocks (64-256-256); the cifar10-fast "
               "recipe",
    "fasttext": "text: mean of word and hashed bigram embeddings, linear; args: embed, buckets, dropout",
    "lenet": "the official PyTorch CIFAR-10 tutorial's LeNet (conv 6, conv 16, fc 120-84)",
    "mlp": "multi-layer perceptron on flattened inputs; args: hidden (default [512, 128]), dropout",
    "resnet18": "ResNet-18 with the CIFAR stem (3x3 conv, no max-pool): 11M parameters, ~95% on CIFAR-10",
    "tudui": "the CIFAR-10 tutorial's CNN: 3x (conv 5x5 + max-pool), 2 linear layers (64 hidden)",
}
OPTIMIZERS = {
    "adadelta": "Adadelta; rho, eps, weight_decay",
    "adagrad": "Adagrad; lr_decay, eps, weight_decay",
    "adam": "Adam; betas, eps, weight_decay (L2)",
    "adamw": "AdamW; betas, eps, decoupled weight_decay",
    "muon": "Muon on conv filters and hidden matrices (args: muon_lr, muon_momentum, normalize), Nesterov SGD on the "
            "rest",
    "rmsprop": "RMSprop; alpha, eps, momentum, weight_decay",
    "sgd": "stochastic gradient descent; momentum, nesterov, weight_decay",
}
LOSSES = {
    "bce": "binary cross-entropy on logits (a one-output binary head, or multi-label 0/1 targets)",
    "cross-entropy": "cross-entropy on logits (classification); train.label_smoothing",
    "l1": "mean absolute error (regression)",
    "mse": "mean squared error (regression)",
    "nll": "negative log-likelihood on log-probabilities (models ending in log_softmax)",
}
SCHEDULERS = {
    "cosine": "cosine decay from optim.lr to min_lr over the run",
    "none": "constant learning rate (after the warmup, if any)",
    "onecycle": "rise to optim.lr over pct_start of the run, then anneal (Smith's 1cycle)",
    "step": "multiply the lr by gamma every step_epochs epochs",
}
METRICS = {
    "balanced_acc": "the mean of the classes' recalls (accuracy when the classes are unbalanced)",
    "top5_acc": "the share of examples whose class is among the 5 highest scores",
}

# the titles `nettrain list` prints, in its order
LISTED = (("datasets", DATASETS), ("models", MODELS), ("optimizers", OPTIMIZERS), ("losses", LOSSES),
          ("schedulers", SCHEDULERS), ("metrics", METRICS))
