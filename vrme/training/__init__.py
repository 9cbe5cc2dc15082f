"""Training: leave-one-subject-out folds, priors from a fold's training labels, fitting the
multitask model, and the final model on all subjects."""
