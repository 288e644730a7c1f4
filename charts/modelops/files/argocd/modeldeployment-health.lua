-- Argo CD health check of a modelops.io ModelDeployment (docs/gitops.md).
-- argocd-cm key: resource.customizations.health.modelops.io_ModelDeployment
-- Argo CD runs it in gopher-lua (Lua 5.1) with only the base, table and os libraries open:
-- no string library, so text is joined with `..` and numbers read with tonumber.
--
-- It reads the kstatus conditions the operator writes, the same ones Flux reads:
--   no status for the current generation yet -> Progressing
--   Stalled=True (a failing rollout, an invalid spec, or reason VersionRejected: spec.model
--     names a version a ChampionChallenger rolled back)       -> Degraded
--   Ready=True                                                -> Healthy
--   otherwise (rolling out)                                   -> Progressing
local function condition(kind)
  for _, c in ipairs(obj.status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function explained(c)
  local message = c.message or ""
  if c.reason == nil or c.reason == "" then
    return message
  end
  return c.reason .. ": " .. message
end

local generation = tonumber(obj.metadata.generation)
local observed = nil
if obj.status ~= nil then
  observed = tonumber(obj.status.observedGeneration)
end
if observed == nil or (generation ~= nil and observed < generation) then
  return {
    status = "Progressing",
    message = "waiting for the operator to observe generation " .. tostring(generation),
  }
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = explained(stalled)}
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message or ""}
end
local message = "waiting for the operator"
if ready ~= nil then
  message = explained(ready)
end
return {status = "Progressing", message = message}
