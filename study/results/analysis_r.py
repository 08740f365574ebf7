"""analysis.R: the mixed models of tests.csv as an R script for lme4, written beside the export.

A reviewer runs `Rscript analysis.R` in the export folder and gets `tests_lme4.csv`: the same
models fitted from responses.csv by glmer (Laplace, nAGQ = 1) and lmer (REML), one row per
fixed-effect contrast with tests.csv's columns (task, model, measure, test, method_a, method_b,
n, estimate, se, ci_low, ci_high, p). The rows analysed, the reference levels and the compare
pairs follow study.results.analysis; the script is generated from the task plugins' measures and the
config's method order, so it cannot drift from them.
"""
from __future__ import annotations

from collections.abc import Sequence

from study.protocol.tasks import TASKS

ANALYSIS_R = "analysis.R"      # written beside the export's CSVs

LME4_FILE = "tests_lme4.csv"

TEMPLATE = r'''# {script} -- written by `camstudy export`: the mixed models of tests.csv, fitted by R's lme4.
# Run in this folder: Rscript {script}    (needs the lme4 package)
# Writes {output}: one row per fixed-effect contrast, in tests.csv's columns.
#   accuracy, compare preference: glmer(y ~ method + (1|participant) + (1|image), binomial), Laplace (nAGQ = 1)
#   rating, trust, confidence:    lmer(y ~ method + (1|participant) + (1|image)), REML
#   utility (test trials):        glmer(correct ~ condition + round + (1|participant) + (1|image), binomial),
#                                 reference condition "none", round numeric
# p values and 95% intervals are Wald's (normal reference), as camstudy reports them.
suppressPackageStartupMessages(library(lme4))
invisible(Sys.setlocale("LC_COLLATE", "C"))   # sort method names as camstudy does

method_order <- c({methods})
measures <- data.frame(
  task = c({tasks}),
  column = c({columns}),
  measure = c({names}),
  logistic = c({logistic}),
  stringsAsFactors = FALSE)

r <- read.csv("responses.csv", colClasses = "character", na.strings = "")
r$model[is.na(r$model)] <- ""
r <- r[r$excluded != "true" & r$is_practice != "true" & r$is_attention_check != "true" & !is.na(r$response), ]

rows <- list()
add_rows <- function(fit, task, model, measure, terms, method_a, method_b) {{
  co <- summary(fit)$coefficients
  test <- if (isLMM(fit)) "mixed_linear" else "mixed_logit"
  for (i in seq_along(terms)) {{
    est <- co[terms[i], "Estimate"]; se <- co[terms[i], "Std. Error"]
    rows[[length(rows) + 1]] <<- data.frame(
      task = task, model = model, measure = measure, test = test, method_a = method_a[i],
      method_b = method_b[i], n = nobs(fit), estimate = est, se = se,
      ci_low = est - qnorm(0.975) * se, ci_high = est + qnorm(0.975) * se,
      p = 2 * pnorm(-abs(est / se)), singular = isSingular(fit), stringsAsFactors = FALSE)
  }}
}}
fit_model <- function(formula, data, logistic) {{
  tryCatch(
    if (logistic) glmer(formula, data = data, family = binomial) else lmer(formula, data = data, REML = TRUE),
    error = function(e) {{ message("skipped: ", conditionMessage(e)); NULL }})
}}

for (i in seq_len(nrow(measures))) {{
  m <- measures[i, ]
  d <- r[r$task == m$task & !is.na(r[[m$column]]), ]
  for (model in sort(unique(d$model))) {{
    dm <- d[d$model == model, ]
    used <- unique(dm$method)
    levels <- c(intersect(method_order, used), sort(setdiff(used, method_order)))
    if (length(levels) < 2) next
    dm$y <- if (m$logistic) as.numeric(dm[[m$column]] == "true") else as.numeric(dm[[m$column]])
    dm$method <- factor(dm$method, levels = levels)
    fit <- fit_model(y ~ method + (1 | participant_id) + (1 | image_id), dm, m$logistic)
    if (!is.null(fit)) add_rows(fit, m$task, model, m$measure, paste0("method", levels[-1]), levels[-1],
                                rep(levels[1], length(levels) - 1))
  }}
}}

# compare: per pair (sorted), the log-odds that the first method is preferred; "same" set aside.
d <- r[r$task == "compare" & r$response != "same", ]
d$first <- pmin(d$method, d$method_b)
d$second <- pmax(d$method, d$method_b)
d$y <- as.numeric(d$response == d$first)
for (key in sort(unique(paste(d$model, d$first, d$second, sep = "\r")))) {{
  part <- strsplit(key, "\r", fixed = TRUE)[[1]]
  dp <- d[d$model == part[1] & d$first == part[2] & d$second == part[3], ]
  fit <- fit_model(y ~ 1 + (1 | participant_id) + (1 | image_id), dp, TRUE)
  if (!is.null(fit)) add_rows(fit, "compare", part[1], "preferred", "(Intercept)", part[2], part[3])
}}

# utility: did the condition's explanations teach people to predict the model? Test trials only.
d <- r[r$task == "utility" & !is.na(r$phase) & r$phase == "test" & !is.na(r$correct), ]
for (model in sort(unique(d$model))) {{
  dm <- d[d$model == model, ]
  levels <- c("none", sort(setdiff(unique(dm$method), "none")))
  if (!("none" %in% dm$method) || length(levels) < 2) next
  dm$y <- as.numeric(dm$correct == "true")
  dm$method <- factor(dm$method, levels = levels)
  dm$round <- as.numeric(dm$round)
  fit <- fit_model(y ~ method + round + (1 | participant_id) + (1 | image_id), dm, TRUE)
  if (!is.null(fit)) add_rows(fit, "utility", model, "accuracy", c(paste0("method", levels[-1]), "round"),
                              c(levels[-1], "round"), c(rep("none", length(levels) - 1), ""))
}}

out <- if (length(rows)) do.call(rbind, rows) else data.frame()
write.csv(out, "{output}", row.names = FALSE)
cat("wrote {output}:", nrow(out), "rows\n")
'''


def analysis_script(methods: Sequence[str]) -> str:
    """The R script for a study whose methods come in this order (the first used is the reference)."""
    measures = [(task, m.column, m.name, m.column == "correct") for task, plugin in TASKS.items()
                for m in plugin.measures]
    return TEMPLATE.format(
        script=ANALYSIS_R, output=LME4_FILE, methods=_r_strings(methods),
        tasks=_r_strings(t for t, _, _, _ in measures), columns=_r_strings(c for _, c, _, _ in measures),
        names=_r_strings(n for _, _, n, _ in measures),
        logistic=", ".join("TRUE" if lg else "FALSE" for *_, lg in measures))


def _r_strings(values) -> str:
    """R string literals, comma-separated (backslashes and double quotes escaped)."""
    return ", ".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
