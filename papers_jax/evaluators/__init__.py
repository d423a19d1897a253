"""Evaluators shared by the self-supervised methods: feature extraction, k-NN, linear probe, fine-tune.

  feats = features.extract(apply_fn, source, preprocess_fn)      # (features, labels) in numpy
  knn.knn_accuracy(train_x, train_y, test_x, test_y, ks=(20, 200), temperature=0.07)
  linear_probe.fit_and_evaluate(train_x, train_y, test_x, test_y)  # standardised features + softmax regression
  finetune.run(config, workdir, init_from=...)                      # the classification task from a checkpoint
"""
