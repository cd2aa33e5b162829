/**
 * The HTML pages a person reaches through a verification link: confirm, wrong password, choose a
 * new password, active, still activating, invalid or expired (with a form for a new link), new
 * link sent, rate limited, temporarily unavailable, and a generic error page.
 *
 * Escaped by construction: pages are built only with the `html` tag, which escapes every
 * interpolated value (escape-html) unless it is itself an `html` fragment. There is no other
 * way to put text into a page.
 *
 * Every page works without JavaScript, loads nothing from anywhere (one inline style, allowed by
 * its hash in the Content-Security-Policy), labels every input, and is sent with
 * `Referrer-Policy: no-referrer`, so the token in the link's URL is not passed on. Forms post to
 * relative URLs (`verify`, `resend`), which resolve next to the link under any path prefix.
 */
import { createHash } from 'node:crypto';
import escapeHtml from 'escape-html';

/** A fragment of HTML that is safe as it is: only the `html` tag makes one. */
export class SafeHtml {
  private constructor(readonly value: string) {}
  /** @internal the `html` tag's constructor; nothing else should call it. */
  static trusted(value: string): SafeHtml {
    return new SafeHtml(value);
  }
  toString(): string {
    return this.value;
  }
}

type Interpolated = string | number | SafeHtml | null | undefined | false | readonly Interpolated[];

function render(value: Interpolated): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** Tagged template: `html\`<p>${text}</p>\`` escapes `text`; nested `html` fragments stay as they are. */
export function html(strings: TemplateStringsArray, ...values: Interpolated[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '');
  });
  return SafeHtml.trusted(out);
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}
h1{font-size:1.6rem}label{display:block;font-weight:600;margin-top:1rem}
input[type=password],input[type=email]{display:block;width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;margin-top:.25rem}
button{margin-top:1rem;padding:.55rem 1.1rem;font-size:1rem;cursor:pointer}
.note{color:#444}.problem{color:#8a1010;font-weight:600}section{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}`;

/** The headers every page is sent with. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Security-Policy': [
    "default-src 'none'",
    `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // The pages carry the token: no cache keeps them.
  'Cache-Control': 'no-store',
};

function document(title: string, content: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title>
<style>${SafeHtml.trusted(STYLE)}</style>
</head>
<body>
<main>
<h1>${title}</h1>
${content}
</main>
</body>
</html>
`.value;
}

const MIN_PASSWORD_CHARS = 8;

function confirmForm(token: string): SafeHtml {
  return html`<form method="post" action="verify">
<input type="hidden" name="token" value="${token}">
<label for="password">The password you chose when you signed up</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Confirm and activate</button>
</form>`;
}

function newPasswordForm(token: string, problem?: string): SafeHtml {
  return html`<form method="post" action="verify">
<input type="hidden" name="token" value="${token}">
${problem ? html`<p class="problem" id="new-password-problem">${problem}</p>` : ''}
<label for="new_password">New password (at least ${MIN_PASSWORD_CHARS} characters)</label>
<input id="new_password" name="new_password" type="password" autocomplete="new-password" minlength="${MIN_PASSWORD_CHARS}" required${problem ? html` aria-describedby="new-password-problem"` : ''}>
<button type="submit">Set password and activate</button>
</form>`;
}

function chooseLink(token: string): SafeHtml {
  return html`<a href="verify?token=${encodeURIComponent(token)}&amp;choose=new">choose a new password</a>`;
}

function resendForm(tenant: string): SafeHtml {
  return html`<form method="post" action="resend">
<input type="hidden" name="tenant" value="${tenant}">
<label for="email">Your email address</label>
<input id="email" name="email" type="email" autocomplete="email" required>
<button type="submit">Send me a new link</button>
</form>`;
}

/** A page and the status it is sent with. */
export interface Page {
  status: number;
  html: string;
}

export const pages = {
  /** 200: the link of a pending signup. Confirms with the signup's password, or offers a new one. */
  confirm(token: string): Page {
    return {
      status: 200,
      html: document(
        'Confirm your email address',
        html`<p>Enter the password you chose when you signed up to activate your account.</p>
${confirmForm(token)}
<p class="note">Forgot it, or did someone else start this sign-up with your address? You can ${chooseLink(token)} instead.</p>`,
      ),
    };
  },

  /** 403: the password does not match the one chosen for the signup; nothing changed. */
  wrongPassword(token: string): Page {
    return {
      status: 403,
      html: document(
        'That password does not match',
        html`<p class="problem">It is not the password chosen for this sign-up. Nothing was changed.</p>
<p>Try again:</p>
${confirmForm(token)}
<section>
<h2>Or choose a new password</h2>
<p>Anyone who can open this link can set the account's password. If you do not remember the password, or did not start this sign-up yourself, set your own:</p>
${newPasswordForm(token)}
</section>`,
      ),
    };
  },

  /** 200 (or 400 with the problem): the form to set a new password with the link. */
  choosePassword(token: string, problem?: string): Page {
    return {
      status: problem ? 400 : 200,
      html: document(
        'Choose a password',
        html`<p>Set the password for your new account. It replaces any password chosen when the sign-up was started.</p>
${newPasswordForm(token, problem)}`,
      ),
    };
  },

  /** 200: the account is active. */
  active(): Page {
    return { status: 200, html: document('Your account is active', html`<p>Your email address is confirmed and your account is now active. You can close this page and sign in.</p>`) };
  },

  /**
   * 202: confirmed, activation not finished yet (a slow worker). `token`, when known, lets the page
   * check again; with `confirmAgain` (the link opened again later) it also offers to confirm
   * again, for a confirmation that never reached the workflow (an outage in between).
   */
  activating(token?: string, confirmAgain = false): Page {
    return {
      status: 202,
      html: document(
        'Almost done',
        html`<p>Your email address is confirmed and your account is being activated. This usually takes a few seconds.</p>
${token ? html`<p><a href="verify?token=${encodeURIComponent(token)}">Check again</a></p>` : html`<p>Open the link in your email again in a moment to see that it is active.</p>`}
${token && confirmAgain ? html`<section><p>Still not active after a minute? Confirm again:</p>${confirmForm(token)}</section>` : ''}`,
      ),
    };
  },

  /** 410: unknown, replaced or expired link, with a form for a new one. */
  invalid(tenant: string): Page {
    return {
      status: 410,
      html: document(
        'This link cannot be used',
        html`<p>The link is invalid, was replaced by a newer one, or has expired.</p>
<p>If your sign-up is still waiting for confirmation, we can send you a new link:</p>
${resendForm(tenant)}
<p class="note">If the sign-up has expired, start it again from where you signed up.</p>`,
      ),
    };
  },

  /** 202: the answer to the resend form, whatever the address. */
  resendSent(): Page {
    return {
      status: 202,
      html: document(
        'Check your email',
        html`<p>If a sign-up for that address is waiting for confirmation, a new link is on its way. Links sent earlier no longer work.</p>
<p class="note">Nothing arriving? Check your spam folder; a new link can be sent once a minute.</p>`,
      ),
    };
  },

  /** 429: over a rate limit. */
  rateLimited(retryAfterSeconds: number): Page {
    const wait = retryAfterSeconds >= 120 ? `${Math.ceil(retryAfterSeconds / 60)} minutes` : `${retryAfterSeconds} seconds`;
    return { status: 429, html: document('Too many attempts', html`<p>Please wait ${wait} and try again.</p>`) };
  },

  /** 503: a dependency is down or the service is busy. `retryHref` is where "Try again" leads. */
  unavailable(retryHref: string | undefined): Page {
    return {
      status: 503,
      html: document(
        'Temporarily unavailable',
        html`<p>The service cannot complete this right now. Nothing is lost: please try again in a moment.</p>
${retryHref ? html`<p><a href="${retryHref}">Try again</a></p>` : html`<p>Go back and submit the form again.</p>`}`,
      ),
    };
  },

  /** Any other failure, with its status and message (messages are written for callers). */
  error(status: number, title: string, message: string): Page {
    return { status, html: document(title, html`<p>${message}</p>`) };
  },
};
