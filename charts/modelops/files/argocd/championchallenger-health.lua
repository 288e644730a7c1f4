-- Argo CD health check of a modelops.io ChampionChallenger (docs/gitops.md).
-- argocd-cm key: resource.customizations.health.modelops.io_ChampionChallenger
-- Argo CD runs it in gopher-lua (Lua 5.1) with only the base, table and os libraries open:
-- no string library, so text is joined with `..` and numbers read with tonumber.
--
-- The operator writes everything this needs into the ChampionChallenger's own status (a
-- health check sees one object): status.rejected.namedByTarget says whether the target
-- ModelDeployment's spec.model still names the version a rollback rejected.
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

local function version_of(model)
  if model == nil or model.version == nil then
    return "?"
  end
  return model.version
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

local status = obj.status
local phase = status.phase or "Idle"
local said = status.message or ""
local name = obj.metadata.name
local namespace = obj.metadata.namespace or "default"
local target = "?"
if obj.spec ~= nil and obj.spec.targetRef ~= nil then
  target = obj.spec.targetRef.name
end

-- A person must change something: the policy (Failed) or Git (a rejected version).
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = explained(stalled)}
end
if phase == "Failed" then
  return {status = "Degraded", message = said}
end
local rejected = status.rejected
if rejected ~= nil and rejected.namedByTarget == true then
  return {
    status = "Degraded",
    message = version_of(rejected) .. " was rolled back and ModelDeployment " .. target
      .. " still names it in spec.model; " .. version_of(status.champion)
      .. " keeps serving. Name another version in Git, or "
      .. version_of(status.champion) .. " to accept the rollback",
  }
end

-- Paused: the machine stops, except halfway through a swap, which it finishes first.
local moving = phase == "Promoting" or phase == "RollingBack"
if obj.spec ~= nil and obj.spec.paused == true and not moving then
  return {
    status = "Suspended",
    message = "paused (spec.paused is true) in phase " .. phase .. ": " .. said,
  }
end

if phase == "AwaitingApproval" then
  return {
    status = "Suspended",
    message = "awaiting approval of " .. version_of(status.challenger)
      .. ": kubectl modelops approve " .. name .. " -n " .. namespace
      .. " (or the Argo CD action approve)",
  }
end
if phase == "Progressing" or moving then
  return {status = "Progressing", message = phase .. ": " .. said}
end

-- At rest (Idle, Promoted, RolledBack): healthy once the policy is in force.
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = phase .. ": " .. said}
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = explained(reconciling)}
end
return {status = "Progressing", message = "waiting for the operator"}
