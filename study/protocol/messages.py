"""The survey's own words in every language it speaks: one catalogue, looked up by key.

Everything a participant reads that the study's config does not supply comes from here: the
buttons, headings and notices of the survey (`ui/`) and the wording the task plugins write into
each trial at build time (prompts, option labels, feedback). Keeping both in one catalogue means
a language is complete or absent as a whole; tests/test_messages.py checks that every language
has exactly the keys English has, so a missing translation fails a test instead of showing a
key (or English) to a participant.

A language is usable by a study only if it is here (`LANGUAGES`); the study's own texts come
from its config (`[text]`, `[text.<lang>]`). Values are `str.format` templates; `{name}`-style
fields are filled in by `message`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

DEFAULT_LANGUAGE = "en"

Say = Callable[..., str]     # say(key, **fields) -> the message in one language

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        # consent and instructions
        "consent.agree": "I agree to take part",
        "consent.decline": "I do not agree",
        "consent.pilot": "Pilot run: your answers are marked as a pilot and left out of the study's results.",
        "instructions.title": "Instructions",
        "instructions.example_alt": "An example explanation map for {name}",
        "instructions.example_caption": "An example: the map for “{name}”. The red area is what the "
                                        "model relied on most to decide “{name}”.",
        "instructions.practice": "The first questions are practice: after each one you will see the right answer.",
        "instructions.how_to_answer": "You answer each question by choosing an option and pressing Next, or "
                                      "with the keyboard: 1, 2, 3 … for your answer, A, B, C … for how "
                                      "confident you are (where asked), and Enter. You can change your choice "
                                      "until you press Next.",
        "resume.code": "Your resume code is **{code}**. Please note it down: if this browser forgets the study "
                       "(or you move to another one), the code lets you continue where you stopped.",
        "resume.reminder": "Your resume code: {code}",
        "instructions.start": "Start",
        # trials
        "trial.progress": "Question {n} of {total}",
        "trial.practice": "Practice question",
        "trial.your_answer": "Your answer",
        "trial.how_confident": "How confident are you?",
        "trial.next": "Next",
        "trial.keyboard_hint": "Keyboard: 1, 2, 3 … choose an answer, A, B, C … your confidence, Enter goes on.",
        "trial.keyboard_hint_answer": "Keyboard: 1, 2, 3 … choose an answer, Enter goes on.",
        "trial.keyboard_hint_next": "Keyboard: Enter goes on.",
        "trial.choose": "Please choose an answer before continuing.",
        "trial.choose_with_confidence": "Please choose an answer and your confidence before continuing.",
        "trial.resend": "Your answer has not reached us yet (the connection was interrupted). Please press Next "
                        "again: the same answer is sent, and stored only once.",
        "trial.alt_one": "Explanation map, the picture",
        "trial.alt_of": "Explanation map, picture {index} of {n}",
        "trial.already_answered": "That question had already been answered in another tab or window, so this "
                                  "answer was not stored again. Here is the next question.",
        "feedback.title": "Practice",
        "feedback.correct": "Correct!",
        "feedback.wrong": "Not quite.",
        "feedback.continue": "Continue",
        # the end
        "questionnaire.title": "Almost done",
        "questionnaire.intro": "A few short questions about you and the task. You may skip any of them.",
        "questionnaire.finish": "Finish",
        "questionnaire.limit": "Up to {limit} characters; anything longer is cut there.",
        "done.title": "Thank you!",
        "done.body": "You have completed the study. Your answers are saved.",
        "done_again.title": "You have already completed this study",
        "done_again.body": "This participant link has already been used to complete the study, and your "
                           "answers are saved. Here is your completion code again.",
        "done.code": "Your completion code",
        "done.return": "Return to the study platform",
        # withdrawal
        "withdraw.offer": "Withdraw from the study",
        "withdraw.title": "Withdraw from the study?",
        "withdraw.body_delete": "If you withdraw, the study ends now and **all your answers are deleted**. "
                                "You do not have to give a reason.",
        "withdraw.body_keep": "If you withdraw, the study ends now. Your answers so far are kept, marked as "
                              "withdrawn, as the information page said. You do not have to give a reason.",
        "withdraw.stay": "Continue the study",
        "withdraw.leave": "Withdraw",
        "withdrawn.title": "You have withdrawn",
        "withdrawn.body_delete": "The study has ended and your answers were deleted. Thank you for your time. "
                                 "You can close this tab.",
        "withdrawn.body_keep": "The study has ended and your answers are kept, marked as withdrawn. Thank you "
                               "for your time. You can close this tab.",
        # pages that end or refuse a visit
        "in_use.title": "This link is in use in another browser",
        "in_use.body": "This participant link was opened in another browser, where the study continues. "
                       "Please go back to that browser. If you cannot, enter the resume code you were shown "
                       "when you agreed to take part, or contact the researchers: they can move your link to "
                       "this browser.",
        "in_use.code": "Resume code",
        "in_use.continue": "Continue in this browser",
        "in_use.wrong_code": "That is not the resume code of this link ({tries} tries left).",
        "in_use.locked": "Too many wrong codes for this link. Please contact the researchers: they can move "
                         "your link to this browser.",
        "conflict.title": "You have already agreed to take part",
        "conflict.body": "You already agreed to take part (in another tab or window); to stop now, use "
                         "“Withdraw from the study”.",
        "declined.title": "Thank you",
        "declined.body": "You chose not to take part, so the study ends here and none of your answers were "
                         "recorded. You can close this tab.",
        "closed.title": "This link has already been used",
        "closed.body": "This participant link has already been used to take part (or to withdraw), so it "
                       "cannot start again. Thank you for your interest! You can close this tab.",
        "bad_link.title": "Please use your study link",
        "bad_link.body": "This page needs the personal link you were given (it carries your participant id). "
                         "Please open the study from that link.",
        "error.unexpected": "Sorry, something went wrong on our side. Your answers so far are saved; please "
                            "reload this page in a moment.",
        # trial wording, written into each trial at build time by the task plugins
        "task.no_right_answer": "There is no right or wrong answer here: we want your own judgement.",
        "task.left": "Left",
        "task.right": "Right",
        "task.attention.prompt": "This question checks attention: please choose **{label}**, whatever the "
                                 "picture shows.",
        "task.attention.feedback": "The instruction asked for **{label}**.",
        "task.class_discrimination.prompt": "The picture contains **{a}** and **{b}**. Which of the two is "
                                            "highlighted by the explanation?",
        "task.class_discrimination.neither": "Both or neither",
        "task.class_discrimination.feedback": "The explanation was made for **{name}**.",
        "task.compare.prompt": "Which map highlights the **{name}** best?",
        "task.compare.same": "About the same",
        "task.rating.prompt": "How well does this map highlight the **{name}**?",
        "task.rating.lowest": "1 - not at all",
        "task.rating.highest": "5 - very well",
        "task.trust.prompt": "Both models classify this image as **{name}**. Based on the explanations, which "
                             "model seems more reliable?",
        "task.trust.left_much": "Left is much more reliable",
        "task.trust.left_little": "Left is a little more reliable",
        "task.trust.equal": "Equally reliable",
        "task.trust.right_little": "Right is a little more reliable",
        "task.trust.right_much": "Right is much more reliable",
        "task.distinction.prompt": "These are the explanations for the model's most likely classes. Which one "
                                   "is the correct class for the image?",
        "task.distinction.feedback": "The image shows **{name}**.",
        "task.agreement.prompt": "The model predicts **{name}**. Looking at the explanation, is the prediction "
                                 "correct?",
        "task.agreement.yes": "Yes, it is correct",
        "task.agreement.no": "No, it is wrong",
        "task.agreement.was_right": "The prediction was correct.",
        "task.agreement.was_wrong": "The prediction was wrong.",
        "task.examples.prompt": "On the left is an image; on the right, the {k} training images that helped the model most with it, each with its label. **Which class will the model predict for the image on the left?**",
        "task.examples.caption": "The image, and the {k} most helpful training images with their labels",
        "task.examples.predicted": "The model predicted **{name}**.",
        "task.utility.chose": "The model chose **{name}** for this image.",
        "task.utility.chose_map": "The model chose **{name}** for this image. The map shows what it relied on: red "
                                  "areas most, blue areas least.",
        "task.utility.study": "Look at it closely to learn how the model decides, then go on.",
        "task.utility.guess": "**Which class will the model choose for this image?** You will then see what it chose.",
        "task.utility.test": "**Which class will the model choose for this image?** There is no map now: use what "
                             "you have learned about how the model decides.",
        "task.utility.image": "The image",
        "task.utility.map": "What the model relied on",
        "confidence.4.1": "Not confident",
        "confidence.4.2": "Somewhat confident",
        "confidence.4.3": "Fairly confident",
        "confidence.4.4": "Very confident",
        "confidence.5.1": "Not at all confident",
        "confidence.5.2": "Slightly confident",
        "confidence.5.3": "Moderately confident",
        "confidence.5.4": "Quite confident",
        "confidence.5.5": "Completely confident",
    },
    "de": {
        "consent.agree": "Ich bin einverstanden und nehme teil",
        "consent.decline": "Ich bin nicht einverstanden",
        "consent.pilot": "Probelauf: Ihre Antworten werden als Probelauf markiert und nicht in die Ergebnisse der Studie aufgenommen.",
        "instructions.title": "Anleitung",
        "instructions.example_alt": "Eine Beispiel-Erklärungskarte für {name}",
        "instructions.example_caption": "Ein Beispiel: die Karte für „{name}“. Der rote Bereich ist das, worauf "
                                        "sich das Modell bei der Entscheidung „{name}“ am meisten gestützt hat.",
        "instructions.practice": "Die ersten Fragen sind Übungsfragen: Nach jeder sehen Sie die richtige Antwort.",
        "instructions.how_to_answer": "Sie beantworten jede Frage, indem Sie eine Option wählen und auf Weiter "
                                      "klicken, oder mit der Tastatur: 1, 2, 3 … für Ihre Antwort, A, B, C … "
                                      "dafür, wie sicher Sie sind (wo gefragt), und Enter. Bis Sie auf Weiter "
                                      "klicken, können Sie Ihre Wahl noch ändern.",
        "resume.code": "Ihr Fortsetzungscode ist **{code}**. Bitte notieren Sie ihn: Falls dieser Browser die "
                       "Studie vergisst (oder Sie den Browser wechseln), können Sie damit dort weitermachen, wo "
                       "Sie aufgehört haben.",
        "resume.reminder": "Ihr Fortsetzungscode: {code}",
        "instructions.start": "Beginnen",
        "trial.progress": "Frage {n} von {total}",
        "trial.practice": "Übungsfrage",
        "trial.your_answer": "Ihre Antwort",
        "trial.how_confident": "Wie sicher sind Sie?",
        "trial.next": "Weiter",
        "trial.keyboard_hint": "Tastatur: 1, 2, 3 … Antwort wählen, A, B, C … wie sicher Sie sind, Enter geht weiter.",
        "trial.keyboard_hint_answer": "Tastatur: 1, 2, 3 … Antwort wählen, Enter geht weiter.",
        "trial.keyboard_hint_next": "Tastatur: Enter geht weiter.",
        "trial.choose": "Bitte wählen Sie eine Antwort, bevor Sie fortfahren.",
        "trial.choose_with_confidence": "Bitte wählen Sie eine Antwort und wie sicher Sie sind, bevor Sie "
                                        "fortfahren.",
        "trial.resend": "Ihre Antwort ist noch nicht bei uns angekommen (die Verbindung war unterbrochen). Bitte "
                        "klicken Sie noch einmal auf Weiter: Dieselbe Antwort wird gesendet und nur einmal gespeichert.",
        "trial.alt_one": "Erklärungskarte, das Bild",
        "trial.alt_of": "Erklärungskarte, Bild {index} von {n}",
        "trial.already_answered": "Diese Frage wurde bereits in einem anderen Tab oder Fenster beantwortet, "
                                  "daher wurde diese Antwort nicht noch einmal gespeichert. Hier ist die "
                                  "nächste Frage.",
        "feedback.title": "Übung",
        "feedback.correct": "Richtig!",
        "feedback.wrong": "Nicht ganz.",
        "feedback.continue": "Fortfahren",
        "questionnaire.title": "Fast geschafft",
        "questionnaire.intro": "Einige kurze Fragen zu Ihnen und zur Aufgabe. Sie können jede davon "
                               "überspringen.",
        "questionnaire.finish": "Abschließen",
        "questionnaire.limit": "Bis zu {limit} Zeichen; was darüber hinausgeht, wird abgeschnitten.",
        "done.title": "Vielen Dank!",
        "done.body": "Sie haben die Studie abgeschlossen. Ihre Antworten sind gespeichert.",
        "done_again.title": "Sie haben diese Studie bereits abgeschlossen",
        "done_again.body": "Mit diesem Teilnahme-Link wurde die Studie bereits abgeschlossen, und Ihre "
                           "Antworten sind gespeichert. Hier ist Ihr Abschlusscode noch einmal.",
        "done.code": "Ihr Abschlusscode",
        "done.return": "Zurück zur Studienplattform",
        "withdraw.offer": "Von der Studie zurücktreten",
        "withdraw.title": "Von der Studie zurücktreten?",
        "withdraw.body_delete": "Wenn Sie zurücktreten, endet die Studie jetzt und **alle Ihre Antworten werden "
                                "gelöscht**. Sie müssen keinen Grund angeben.",
        "withdraw.body_keep": "Wenn Sie zurücktreten, endet die Studie jetzt. Ihre bisherigen Antworten werden, "
                              "wie in der Information angekündigt, als zurückgezogen markiert aufbewahrt. Sie "
                              "müssen keinen Grund angeben.",
        "withdraw.stay": "Mit der Studie fortfahren",
        "withdraw.leave": "Zurücktreten",
        "withdrawn.title": "Sie sind zurückgetreten",
        "withdrawn.body_delete": "Die Studie ist beendet und Ihre Antworten wurden gelöscht. Vielen Dank für Ihre "
                                 "Zeit. Sie können diesen Tab schließen.",
        "withdrawn.body_keep": "Die Studie ist beendet und Ihre Antworten werden als zurückgezogen markiert "
                               "aufbewahrt. Vielen Dank für Ihre Zeit. Sie können diesen Tab schließen.",
        "in_use.title": "Dieser Link wird in einem anderen Browser verwendet",
        "in_use.body": "Dieser Teilnahme-Link wurde in einem anderen Browser geöffnet, in dem die Studie "
                       "weiterläuft. Bitte kehren Sie zu diesem Browser zurück. Wenn das nicht geht, geben Sie "
                       "den Fortsetzungscode ein, den Sie bei Ihrer Zustimmung erhalten haben, oder wenden Sie "
                       "sich an die Forschenden: Sie können Ihren Link auf diesen Browser übertragen.",
        "in_use.code": "Fortsetzungscode",
        "in_use.continue": "In diesem Browser fortfahren",
        "in_use.wrong_code": "Das ist nicht der Fortsetzungscode dieses Links (noch {tries} Versuche).",
        "in_use.locked": "Zu viele falsche Codes für diesen Link. Bitte wenden Sie sich an die Forschenden: Sie "
                         "können Ihren Link auf diesen Browser übertragen.",
        "conflict.title": "Sie haben der Teilnahme bereits zugestimmt",
        "conflict.body": "Sie haben der Teilnahme bereits zugestimmt (in einem anderen Tab oder Fenster); um "
                         "jetzt aufzuhören, nutzen Sie „Von der Studie zurücktreten“.",
        "declined.title": "Vielen Dank",
        "declined.body": "Sie haben sich gegen eine Teilnahme entschieden; die Studie endet hier und es wurden "
                         "keine Antworten gespeichert. Sie können diesen Tab schließen.",
        "closed.title": "Dieser Link wurde bereits verwendet",
        "closed.body": "Mit diesem Teilnahme-Link wurde bereits teilgenommen (oder zurückgetreten), daher "
                       "kann er nicht noch einmal starten. Vielen Dank für Ihr Interesse! Sie können diesen "
                       "Tab schließen.",
        "bad_link.title": "Bitte verwenden Sie Ihren Studienlink",
        "bad_link.body": "Diese Seite braucht den persönlichen Link, den Sie erhalten haben (er enthält Ihre "
                         "Teilnehmer-ID). Bitte öffnen Sie die Studie über diesen Link.",
        "error.unexpected": "Entschuldigung, bei uns ist etwas schiefgegangen. Ihre bisherigen Antworten sind "
                            "gespeichert; bitte laden Sie diese Seite gleich neu.",
        "task.no_right_answer": "Hier gibt es keine richtige oder falsche Antwort: Uns interessiert Ihr eigenes "
                                "Urteil.",
        "task.left": "Links",
        "task.right": "Rechts",
        "task.attention.prompt": "Diese Frage prüft die Aufmerksamkeit: Bitte wählen Sie **{label}**, egal was "
                                 "das Bild zeigt.",
        "task.attention.feedback": "Die Anweisung verlangte **{label}**.",
        "task.class_discrimination.prompt": "Das Bild enthält **{a}** und **{b}**. Welches der beiden wird von "
                                            "der Erklärung hervorgehoben?",
        "task.class_discrimination.neither": "Beide oder keines",
        "task.class_discrimination.feedback": "Die Erklärung wurde für **{name}** erstellt.",
        "task.compare.prompt": "Welche Karte hebt **{name}** am besten hervor?",
        "task.compare.same": "Etwa gleich",
        "task.rating.prompt": "Wie gut hebt diese Karte **{name}** hervor?",
        "task.rating.lowest": "1 - überhaupt nicht",
        "task.rating.highest": "5 - sehr gut",
        "task.trust.prompt": "Beide Modelle klassifizieren dieses Bild als **{name}**. Welches Modell wirkt "
                             "aufgrund der Erklärungen zuverlässiger?",
        "task.trust.left_much": "Links ist viel zuverlässiger",
        "task.trust.left_little": "Links ist etwas zuverlässiger",
        "task.trust.equal": "Gleich zuverlässig",
        "task.trust.right_little": "Rechts ist etwas zuverlässiger",
        "task.trust.right_much": "Rechts ist viel zuverlässiger",
        "task.distinction.prompt": "Dies sind die Erklärungen für die wahrscheinlichsten Klassen des Modells. "
                                   "Welche ist die richtige Klasse für das Bild?",
        "task.distinction.feedback": "Das Bild zeigt **{name}**.",
        "task.agreement.prompt": "Das Modell sagt **{name}** vorher. Ist die Vorhersage richtig, wenn Sie die "
                                 "Erklärung betrachten?",
        "task.agreement.yes": "Ja, sie ist richtig",
        "task.agreement.no": "Nein, sie ist falsch",
        "task.agreement.was_right": "Die Vorhersage war richtig.",
        "task.agreement.was_wrong": "Die Vorhersage war falsch.",
        "task.examples.prompt": "Links sehen Sie ein Bild, rechts die {k} Trainingsbilder, die dem Modell dabei am meisten geholfen haben, jeweils mit ihrer Klasse. **Welche Klasse wird das Modell für das Bild links vorhersagen?**",
        "task.examples.caption": "Das Bild und die {k} hilfreichsten Trainingsbilder mit ihren Klassen",
        "task.examples.predicted": "Das Modell hat **{name}** vorhergesagt.",
        "task.utility.chose": "Das Modell hat für dieses Bild **{name}** gewählt.",
        "task.utility.chose_map": "Das Modell hat für dieses Bild **{name}** gewählt. Die Karte zeigt, worauf es sich "
                                  "gestützt hat: rote Bereiche am meisten, blaue am wenigsten.",
        "task.utility.study": "Sehen Sie genau hin, um zu lernen, wie das Modell entscheidet, und gehen Sie dann weiter.",
        "task.utility.guess": "**Welche Klasse wird das Modell für dieses Bild wählen?** Danach sehen Sie, was es "
                              "gewählt hat.",
        "task.utility.test": "**Welche Klasse wird das Modell für dieses Bild wählen?** Jetzt gibt es keine Karte: "
                             "Nutzen Sie, was Sie über die Entscheidungen des Modells gelernt haben.",
        "task.utility.image": "Das Bild",
        "task.utility.map": "Worauf sich das Modell gestützt hat",
        "confidence.4.1": "Nicht sicher",
        "confidence.4.2": "Etwas sicher",
        "confidence.4.3": "Ziemlich sicher",
        "confidence.4.4": "Sehr sicher",
        "confidence.5.1": "Überhaupt nicht sicher",
        "confidence.5.2": "Kaum sicher",
        "confidence.5.3": "Mäßig sicher",
        "confidence.5.4": "Recht sicher",
        "confidence.5.5": "Völlig sicher",
    },
}
LANGUAGES = tuple(MESSAGES)


def message(language: str, key: str, **fields) -> str:
    """The message `key` in `language`, with `fields` filled in (KeyError naming both if absent)."""
    try:
        template = MESSAGES[language][key]
    except KeyError:
        raise KeyError(f"no message {key!r} in language {language!r}") from None
    return template.format(**fields) if fields else template


def speaker(language: str) -> Say:
    """`say(key, **fields)` in one language: what the task plugins and the survey pages call."""
    if language not in MESSAGES:
        raise KeyError(f"the survey has no messages in {language!r} (available: {', '.join(LANGUAGES)})")

    def say(key: str, **fields) -> str:
        return message(language, key, **fields)
    say.language = language          # for wording the config gives per language (a task's questions)
    return say


def choose_language(available: Iterable[str], default: str, requested: str | None = None,
                    accept_language: str | None = None) -> str:
    """The language a visitor sees: `?lang=` if the study has it, else the first language of the
    browser's Accept-Language header (by quality, then order; `de-AT` matches `de`) that the
    study has, else the study's default. An unknown `?lang=` falls through instead of failing:
    a participant should never be stopped by a link parameter."""
    available = list(available)

    def match(tag: str | None) -> str | None:
        tag = (tag or "").strip().lower().replace("_", "-")
        if not tag or tag == "*":
            return None
        for candidate in (tag, tag.split("-")[0]):
            if candidate in available:
                return candidate
        return None

    if match(requested):
        return match(requested)
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        if match(tag):
            return match(tag)
    return default
