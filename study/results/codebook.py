"""The export's tables: their names, and every column's type and meaning (`codebook.csv`).

`camstudy export` writes the tables of `TABLES` with the headers of `CODEBOOK`; naming each column
once, here, keeps the files and their codebook from drifting apart. faithfulness.csv is written by
`camstudy score`, whose module (`study.scoring.files`) owns its columns; the export copies it.
"""
from __future__ import annotations

from study.protocol.tasks import TASKS
from study.scoring.files import FAITHFULNESS_COLUMNS
from study.store.identity import SIM_PREFIX

# file -> [(column, type, description)], in the files' column order. The CSV headers are
# generated from this, so the codebook cannot disagree with the files.
CODEBOOK: dict[str, list[tuple[str, str, str]]] = {
    "responses": [
        ("study_id", "integer", "Database id of the study version the answer belongs to."),
        ("participant_id", "integer", "Database id of the participant (see participants.csv)."),
        ("external_id", "string", f"The participant's id from the link (PROLIFIC_PID, pid, ...); '{SIM_PREFIX}' marks simulated participants."),
        ("trial_index", "integer", "Position of the trial in the participant's plan, from 0."),
        ("task", "string", f"Task type: {', '.join(TASKS)}."),
        ("image_id", "string", "Id of the stimulus image (a photo or a two-category composite)."),
        ("model", "string", "Classifier explained; for trust, the model that positive ratings favour."),
        ("method", "string", "Explanation method shown; for compare, the map shown on the left."),
        ("method_b", "string", "compare: the method shown on the right; empty for other tasks."),
        ("target_class", "integer", "ImageNet class index the explanation is for."),
        ("response", "string", "The option chosen: " + "; ".join(f"{name} {task.codebook}" for name, task in TASKS.items()) + "."),
        ("correct", "boolean", "Whether the answer is right (class_discrimination, distinction, agreement, attention checks); empty where no answer is right."),
        ("confidence", "integer", "Confidence on the task's 4- or 5-point scale (distinction, agreement); empty if not asked."),
        ("rating", "integer", "Numeric reading of the answer: Likert 1-5 (rating) or -2..+2 (trust, positive favours `model`)."),
        ("rt_ms", "integer", "Response time in milliseconds, measured in the participant's browser: from the moment the trial's stimuli were on screen (every image loaded, at the next frame) to the click or key press that submitted the answer. (Answers stored by camstudy before it measured in the browser hold the server's interval here.)"),
        ("server_rt_ms", "integer", "The server's interval for the same answer: from when it first made the trial (before its images reached the browser) to when it stored the answer; it includes network and server delays, so it is for checks, not analysis. Empty for answers stored before it was kept."),
        ("shown_at", "datetime", "When the trial was first shown (ISO 8601, UTC)."),
        ("answered_at", "datetime", "When the answer was stored (ISO 8601, UTC)."),
        ("is_practice", "boolean", "Practice trial with feedback; not analysed."),
        ("is_attention_check", "boolean", "Attention-check trial; decides attention_passed, not analysed otherwise."),
        ("excluded", "boolean", "Left out of the statistics: the participant is excluded, or the answer came faster than the config's exclusion.min_rt_ms (by rt_ms, the browser's time)."),
        ("condition", "string", "The participant's between-subject condition (the method they were assigned); empty when every task is within subjects."),
        ("is_pilot", "boolean", "Answered in a pilot run (camstudy serve --pilot or a pilot link); excluded unless exported with --include-pilot."),
        ("phase", "string", "utility: learn (the image, the model's decision and, unless the condition is none, its map; response empty), guess (with learn_guess: the image alone just before its learning trial, the participant's guess of the decision), test (the image only: which class will the model choose?) or question (an end question; image_id is question:<key>); empty for other tasks."),
        ("round", "integer", "utility: the round of a learn or test trial, from 1; empty otherwise."),
        ("model_decision", "integer", "utility: the class the model chose (its argmax over the task's classes, fixed at build time); on test rows correct means response == model_decision, whether the model was right or not; empty otherwise."),
        ("model_correct", "boolean", "utility: whether the model's decision is the image's true class; empty otherwise."),
        ("image_class", "integer", "utility: the image's true class (index into the model's classes); empty otherwise."),
    ],
    "participants": [
        ("participant_id", "integer", "Database id of the participant."),
        ("external_id", "string", f"Id from the link; '{SIM_PREFIX}' marks simulated participants."),
        ("seed", "integer", "Seed of the participant's randomised trial plan."),
        ("consent_at", "datetime", "When consent was given (ISO 8601, UTC); empty if it was not (see consent)."),
        ("started_at", "datetime", "When the participant answered the consent page (ISO 8601, UTC); people who only opened the link are not listed."),
        ("completed_at", "datetime", "When the participant finished (ISO 8601, UTC); empty if not finished."),
        ("completion_code", "string", "Completion code shown at the end; empty if not finished."),
        ("n_answered", "integer", "Answered trials, practice trials not counted."),
        ("attention_passed", "boolean", "At most exclusion.max_failed_attention_checks attention checks answered wrongly."),
        ("excluded", "boolean", "Left out of the statistics: failed attention checks or did not complete."),
        ("user_agent", "text", "Browser user agent at consent; empty for people who declined (of them only the id, the refusal and its time are kept)."),
        ("consent", "string", "agreed or declined: the answer on the consent page."),
        ("condition", "string", "Between-subject condition (method) assigned at consent, balanced across participants; empty within subjects."),
        ("is_pilot", "boolean", "Took part in a pilot run; excluded from the statistics unless exported with --include-pilot."),
        ("withdrawn", "boolean", "Withdrew during the study and the config keeps such answers (on_withdraw = \"keep\"); always excluded. With the default (\"delete\") nothing of them remains: see withdrawals.csv."),
        ("language", "string", "Language the survey was shown in (en, de, ...: ?lang= in the link, else the browser's language if the study has it, else the config's default); empty for people who declined."),
    ],
    "faithfulness": FAITHFULNESS_COLUMNS,
    "summary": [
        ("task", "string", "Task type."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Explanation method."),
        ("measure", "string", "accuracy (share correct), preferred (compare: share of its comparisons the method won), rating, trust or confidence (means). utility (method = the condition): accuracy (test answers equal to the model's decision), accuracy_model_wrong / accuracy_model_right (on the images the model got wrong / right), accuracy_round_<r> (round r: the learning curve), question_<key> (share of right answers to an end question). agreement and utility: over_reliance (trusting the model where it is wrong: agreement, saying yes; utility, answering the image's true class) and under_reliance (distrusting it where it is right: agreement, saying no; utility, missing its decision)."),
        ("n", "integer", "Analysed answers."),
        ("n_participants", "integer", "Participants contributing those answers."),
        ("estimate", "float", "Proportion or mean."),
        ("ci_low", "float", "Lower end of the 95% interval."),
        ("ci_high", "float", "Upper end of the 95% interval."),
        ("ci_method", "string", "wilson (score interval for proportions) or bootstrap (percentile, 2000 resamples of participants, seed 0)."),
        ("vote_score", "float", "compare only: Ablation-CAM normalised vote score, the method's share of the votes per image pair averaged over pairs (see study.results.analysis.vote_scores)."),
    ],
    "tests": [
        ("task", "string", "Task type."),
        ("model", "string", "Classifier explained."),
        ("measure", "string", "Measure tested (as in summary.csv); 'response' for nominal Krippendorff's alpha, which is computed on the answers themselves."),
        ("test", "string", "wilcoxon_exact / wilcoxon_normal (signed-rank; exact null without ties, else normal approximation), wilcoxon_vs_zero_* (trust against 0), mcnemar_exact (exact binomial on discordant pairs), friedman, sign_test_exact (compare votes, ties set aside), krippendorff_alpha_<level>, mixed_logit (accuracy, compare preference: logistic mixed model, outcome ~ method + (1|participant) + (1|image), Laplace maximum likelihood as lme4's glmer), mixed_linear (rating, trust, confidence: the linear mixed model of the same form, REML as lme4's lmer), mixed_logit_sd / mixed_linear_sd (that model's random-intercept SDs). utility: utility (the relative gain (acc_m - acc_none) / acc_none in test accuracy of method_a's condition over the control, on all test answers or, by measure, on the model's mistakes or right answers; interval: percentile bootstrap over participants within each condition, 2000 resamples, seed 0), mixed_logit (correct ~ condition + round + (1|participant) + (1|image) on test answers, reference none; method_a = round is the per-round slope), fisher_exact / chi_square (an end question's right answers across conditions: Fisher's exact test for two conditions, Pearson's chi-square for more)."),
        ("method_a", "string", "First method of the pair; 'all' for tests across methods; mixed_*: the method contrasted with the reference (compare: the method whose preference is modelled); mixed_*_sd: 'all' (compare: the pair's first method); utility: the explanation method (condition), or round for the mixed logit's slope."),
        ("method_b", "string", "Second method of the pair; empty for tests across methods or against zero; mixed_*: the reference level (the first of the study config's methods that the task used; compare: the pair's other method); mixed_*_sd: empty (compare: the pair's second method); utility: none (the control)."),
        ("paired_by", "string", "Unit of pairing: participant (per-participant means), participant_image, answer, stimulus (alpha: units are stimuli, raters participants), participant+image (mixed models: crossed random intercepts), or for mixed_*_sd the random effect whose SD it is: participant, image or residual."),
        ("statistic", "float", "Test statistic (Wilcoxon W, McNemar min(b, c), Friedman chi-square, votes for method_a, or alpha itself); mixed_logit: the odds ratio exp(estimate); mixed_linear: the Wald z, estimate / se; empty for mixed_*_sd."),
        ("p", "float", "Two-sided p-value; empty for Krippendorff's alpha and mixed_*_sd; mixed_*: Wald z test of the contrast (normal reference distribution)."),
        ("n", "integer", "Paired units (participants, participant x image pairs, votes or stimuli); mixed_*: answers modelled; mixed_*_sd: participants, images or answers (residual)."),
        ("estimate", "float", "mixed_logit: difference in log-odds of method_a against method_b (compare: log-odds that method_a is preferred to method_b); mixed_linear: difference in scale points; mixed_*_sd: the standard deviation (log-odds or scale points; 0 marks a singular fit, an SD below 1e-4 of the residual SD or, for mixed_logit, below 1e-4, as lme4's isSingular); empty for other tests."),
        ("se", "float", "Standard error of estimate (mixed_logit, mixed_linear); empty otherwise."),
        ("ci_low", "float", "Lower end of the Wald 95% interval of estimate, estimate - 1.96 se (log-odds for mixed_logit; exponentiate for the odds ratio's); empty otherwise."),
        ("ci_high", "float", "Upper end of the Wald 95% interval of estimate; empty otherwise."),
    ],
    "correlations": [
        ("level", "string", "method: across images for one method; image: across methods for one image; utility: across methods, each method's utility (tests.csv) against its mean metric (does faithfulness predict what people learn?)."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Method (level method); empty otherwise."),
        ("image_id", "string", "Image (level image); empty otherwise."),
        ("human_measure", "string", "Human measure averaged per method and image (rating, trust, class_discrimination_accuracy, compare_preferred, ...), or utility (level utility)."),
        ("metric", "string", "Faithfulness metric (faithfulness.csv)."),
        ("rho", "float", "Spearman rank correlation."),
        ("p", "float", "Two-sided p-value of rho."),
        ("n", "integer", "Points correlated (images or methods)."),
    ],
    "questionnaire": [
        ("participant_id", "integer", "Database id of the participant."),
        ("external_id", "string", "Id from the link."),
        ("key", "string", "Questionnaire item key from the config."),
        ("value", "text", "The answer as given (free text is neutralised for spreadsheets, see codebook type text)."),
    ],
    "withdrawals": [
        ("action", "string", "withdrawn (by the participant, during the study) or erased (on request, by the researchers)."),
        ("how", "string", "participant, admin page or command line."),
        ("answers_kept", "boolean", "true when on_withdraw = \"keep\" kept the answers, flagged withdrawn; false when they were deleted."),
        ("n", "integer", "How many; anonymous counts only: no ids, no times."),
    ],
    "codebook": [
        ("file", "string", "CSV file the column belongs to."),
        ("column", "string", "Column name."),
        ("type", "string", "integer, float, boolean (true/false), string, text (free text typed by a participant or sent by their browser: a value starting with = + - @, a tab or a carriage return gets a leading ' so that spreadsheets show it instead of running it as a formula) or datetime (ISO 8601, UTC); empty cell = missing."),
        ("description", "string", "What the column holds."),
    ],
}
TABLES = ("responses", "participants", "faithfulness", "summary", "tests", "correlations",
          "questionnaire", "withdrawals", "codebook")


def columns(table: str) -> list[str]:
    """The header of an exported table, in file order."""
    return [name for name, _, _ in CODEBOOK[table]]
