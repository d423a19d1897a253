"""TS2Vec's classification protocol: an RBF-kernel SVM on frozen, per-series representations.

As the official evaluation (tasks/_eval_protocols.fit_svm): with fewer than 50 training series or fewer
than 5 per class, one SVC with C = ∞ (a hard margin); otherwise C is chosen from
{1e-4, …, 1e4, ∞} by 5-fold cross-validation on the training set (the official caps it at 10,000 series,
sampled with stratification: so here). gamma = "scale" throughout. The grid search runs in this process
(the official uses 5 jobs).
"""

import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, np.inf)
MAX_TRAIN = 10_000


def fit_svm(features: np.ndarray, labels: np.ndarray) -> SVC:
  features, labels = np.asarray(features, np.float64), np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  if len(features) < 50 or len(features) // len(classes) < 5:
    return SVC(C=np.inf, gamma="scale").fit(features, labels)
  if len(features) > MAX_TRAIN:
    features, _, labels, _ = train_test_split(features, labels, train_size=MAX_TRAIN, random_state=0,
                                              stratify=labels)
  search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(C_GRID)}, cv=5)
  return search.fit(features, labels).best_estimator_


def svm_accuracy(train_features, train_labels, test_features, test_labels) -> float:
  """Test accuracy of `fit_svm` on the training representations."""
  svm = fit_svm(train_features, train_labels)
  return float((svm.predict(np.asarray(test_features, np.float64)) == np.asarray(test_labels)).mean())
