// Starts Swagger UI on /api/v1/docs (a file, not an inline script: the page's CSP allows
// only scripts from this server). validatorUrl: null keeps the schema from being sent to
// the public validator.
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
