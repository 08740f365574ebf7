// The trial screen of camstudy's survey: stimuli, choices, confidence and Next, in the page itself.
//
// Written by hand (no build step, no dependency) and served by the study server: Streamlit sends it
// with the component and the browser loads it from a blob: URL, so the page makes no request to any
// other host. Why a component and not Streamlit widgets: the response time is measured here, in the
// browser, from the moment every stimulus is on screen (all images decoded, at the next animation
// frame) to the click or key press that submits the answer (the event's timeStamp, on the same clock
// as performance.now()); and the answer, any corrections, and the confidence go to the server in one
// message when the participant submits, so nothing depends on the order in which widget updates
// arrive. After a submission the form is disabled: a double click or a second Enter sends nothing more.
// If the next screen has not come after RESEND_AFTER_MS (the connection dropped as the answer was sent,
// and Streamlit does not queue messages while it reconnects), Next works again and sends the same
// answer with the same response time; the server stores an answer once, whatever arrives twice.
//
// Keys: 1-9 choose an answer (a later digit corrects the choice), a-e choose a confidence (letters, so
// that a correction of the answer is never taken for a confidence), Enter submits.

const CONFIDENCE_KEYS = "abcdefghi";
const RESEND_AFTER_MS = 6000;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function choiceGroup(name, legend, options, keys, onChange) {
  const group = element("fieldset", "cs-group");
  group.setAttribute("role", "radiogroup");
  group.setAttribute("aria-label", legend);
  group.append(element("legend", "cs-legend", legend));
  const inputs = options.map(([value, label], i) => {
    const option = element("label", "cs-option");
    const input = element("input");
    input.type = "radio";
    input.name = name;
    input.value = value;
    input.addEventListener("change", () => onChange(value));
    option.append(input, element("span", "cs-key", keys[i].toUpperCase()), element("span", "cs-label", label));
    group.append(option);
    return input;
  });
  return {group, inputs};
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  const text = data.text;
  parentElement.querySelector(":scope > .cs-trial")?.remove();   // drawn again: keep Streamlit's style element
  const root = element("div", "cs-trial");
  root.dataset.trial = String(data.trial);
  parentElement.append(root);

  // The stimuli, in rows of data.per_row (stacked on a phone by the style sheet).
  const grid = element("div", "cs-stimuli");
  grid.style.setProperty("--cs-per-row", String(data.per_row));
  const images = data.images.map(({src, alt, caption}) => {
    const figure = element("figure", "cs-stimulus");
    const img = element("img");
    img.alt = alt;
    img.src = src;
    figure.append(img);
    if (caption) figure.append(element("figcaption", "", caption));
    grid.append(figure);
    return img;
  });
  root.append(grid);

  let response = data.options.length ? null : "";   // no options: a screen to study, "" is stored
  let confidence = null;
  const answer = data.options.length
    ? choiceGroup(`answer-${data.trial}`, text.answer, data.options, "123456789", (v) => { response = v; warning.hidden = true; })
    : null;
  const sure = data.confidence.length
    ? choiceGroup(`confidence-${data.trial}`, text.confidence, data.confidence, CONFIDENCE_KEYS, (v) => { confidence = v; warning.hidden = true; })
    : null;
  if (answer) root.append(answer.group);
  if (sure) root.append(sure.group);
  const warning = element("p", "cs-warning");
  warning.setAttribute("role", "alert");
  warning.hidden = true;
  const next = element("button", "cs-next", text.next);
  next.type = "button";
  next.disabled = true;            // enabled once the stimuli are on screen: no answer unseen
  root.append(warning, next, element("p", "keyboard-hint", text.hint));

  // Stimuli on screen: every image decoded (or failed: then it shows as broken), then the next frame.
  let shownAt = null;
  let submitted = false;
  Promise.allSettled(images.map((img) => img.decode())).then(() => {
    requestAnimationFrame((frame) => {
      shownAt = frame;
      root.dataset.shownAt = String(frame);
      next.disabled = submitted;
    });
  });

  function pick(group, index) {
    const input = group && group.inputs[index];
    if (!input || submitted) return false;
    input.checked = true;
    input.dispatchEvent(new Event("change"));
    return true;
  }

  let sent = null;      // the submission, kept to send again unchanged
  let resend = null;

  function send() {
    setTriggerValue("submit", sent);
    resend = setTimeout(() => {
      if (!root.isConnected) return;
      submitted = false;
      next.disabled = false;
      warning.textContent = text.resend;
      warning.hidden = false;
    }, RESEND_AFTER_MS);
  }

  function submit(event) {
    if (submitted || shownAt === null) return;
    submitted = true;
    next.disabled = true;
    if (sent !== null) {       // the answer did not get through: the same one again
      warning.hidden = true;
      send();
      return;
    }
    if (response === null || (sure && confidence === null)) {
      submitted = false;
      next.disabled = false;
      warning.textContent = sure ? text.choose_with_confidence : text.choose;
      warning.hidden = false;
      return;
    }
    root.querySelectorAll("input").forEach((input) => { input.disabled = true; });
    sent = {trial: data.trial, response, confidence, rt_ms: Math.max(0, Math.round(event.timeStamp - shownAt))};
    send();
  }

  next.addEventListener("click", submit);

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const typing = target && (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName)
      || (target.tagName === "INPUT" && target.type !== "radio"));
    const elsewhere = target && target.tagName === "BUTTON" && target !== next;   // e.g. "Withdraw"
    if (typing || elsewhere || !root.isConnected) return;
    if (event.key === "Enter") {
      event.preventDefault();     // also keeps a focused Next button from clicking a second time
      submit(event);
      return;
    }
    const key = event.key.toLowerCase();
    const digit = "123456789".indexOf(key);
    if ((digit >= 0 && pick(answer, digit)) || pick(sure, CONFIDENCE_KEYS.indexOf(key))) {
      event.preventDefault();
    }
  }

  document.addEventListener("keydown", onKey, true);   // capture: before a focused radio moves itself
  return () => {
    clearTimeout(resend);
    document.removeEventListener("keydown", onKey, true);
  };
}
