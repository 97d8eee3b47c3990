"""The web dashboard at /dashboard: sign-in with an admin key, an overview of every
function, a page per function (charts, versions and aliases, logs), the model volume.

Pages are HTML shells; `static/dashboard.js` fills them from `/dashboard/api/...`, which
reads the admin API in-process on behalf of the signed-in key. Charts are uPlot, fetched
from npm at install time into `static/vendor/` and served from here (never a CDN).
"""
